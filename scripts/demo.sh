#!/usr/bin/env bash
# Set up (if needed) and run the demo: Airflow on the embedded default (SQLite, LocalExecutor via
# `airflow standalone`) with the example customers from include/. Ctrl-C stops Airflow and every child.
set -euo pipefail
cd "$(dirname "$0")/.."
REPO="$PWD"
export PATH="$REPO/.venv/bin:$PATH"  # airflow standalone starts its components as `airflow ...` from PATH
scripts/setup.sh

export AIRFLOW_HOME="${AIRFLOW_HOME:-$REPO/.airflow-demo}"
PORT="${B2B_DEMO_PORT:-8080}"
export AIRFLOW__CORE__DAGS_FOLDER="$REPO/dags"
export AIRFLOW__CORE__PLUGINS_FOLDER="$REPO/plugins"
export AIRFLOW__CORE__LOAD_EXAMPLES=False
export AIRFLOW__API__PORT="$PORT"
# Task processes report to the API server: on a non-default port they must be told where it is.
export AIRFLOW__CORE__EXECUTION_API_SERVER_URL="http://localhost:$PORT/execution/"
export AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL=10
# Synchronous calls wait for the scheduler: a shorter idle sleep took p50 1.34 s -> 0.89 s
# (benchmarks/sync_calls.py), for ~7% of a core more while idle.
export AIRFLOW__SCHEDULER__SCHEDULER_IDLE_SLEEP_TIME=0.2
export B2B_DATA_DIR="$AIRFLOW_HOME/b2b_data"
mkdir -p "$AIRFLOW_HOME"

# Demo connections (env-var connections: nothing secret, nothing stored). The inventory flows load into
# a local SQLite "app database", globex's order files come from the embedded SFTP server started below,
# acme's CRM is the demo CRM app (include/demo/crm_app.py; login/password = its OAuth client).
export AIRFLOW_CONN_DEMO_WAREHOUSE="{\"conn_type\": \"sqlite\", \"host\": \"$AIRFLOW_HOME/demo_warehouse.db\"}"
export AIRFLOW_CONN_DEMO_APP_DB="{\"conn_type\": \"sqlite\", \"host\": \"$AIRFLOW_HOME/demo_app.db\"}"
CRM_PORT="${B2B_DEMO_CRM_PORT:-8090}"
export AIRFLOW_CONN_ACME_CRM="{\"conn_type\": \"http\", \"host\": \"127.0.0.1\", \"port\": $CRM_PORT, \"login\": \"demo-client\", \"password\": \"demo-secret\"}"
SFTP_PORT="${B2B_DEMO_SFTP_PORT:-2222}"
SFTP_DIR="$AIRFLOW_HOME/demo_sftp"
export AIRFLOW_CONN_GLOBEX_SFTP="{\"conn_type\": \"sftp\", \"host\": \"127.0.0.1\", \"port\": $SFTP_PORT, \"login\": \"globex\", \"extra\": {\"key_file\": \"$SFTP_DIR/keys/client_ed25519\", \"no_host_key_check\": true, \"allow_host_key_change\": true, \"look_for_keys\": false}}"
export AIRFLOW_CONN_INITECH_BILLING_WEBHOOK="generic://:demo-signing-secret@"
# crm_hybrid: each customer's invoice endpoint is an inbound sink of the demo CRM (signed webhooks).
export AIRFLOW_CONN_ACME_INVOICE_HOOK="{\"conn_type\": \"http\", \"host\": \"http://127.0.0.1:$CRM_PORT/inbound/acme-invoices\", \"password\": \"whsec_ZGVtby1hY21lLWludm9pY2Utc2lnbmluZy1rZXk=\"}"
export AIRFLOW_CONN_GLOBEX_INVOICE_HOOK="{\"conn_type\": \"http\", \"host\": \"http://127.0.0.1:$CRM_PORT/inbound/globex-invoices\", \"password\": \"whsec_ZGVtby1nbG9iZXgtaW52b2ljZS1zaWduaW5nLWtleQ==\"}"
export AIRFLOW_CONN_GLOBEX_CRM="$AIRFLOW_CONN_ACME_CRM"
# umbrella's synchronous orders flow: payments and fulfilment in the demo CRM (API key), signed callbacks.
export AIRFLOW_CONN_UMBRELLA_PAYMENTS="{\"conn_type\": \"http\", \"host\": \"127.0.0.1\", \"port\": $CRM_PORT, \"password\": \"demo-api-key\"}"
export AIRFLOW_CONN_UMBRELLA_WAREHOUSE="$AIRFLOW_CONN_UMBRELLA_PAYMENTS"
export AIRFLOW_CONN_UMBRELLA_CALLBACK_SECRET='{"conn_type": "generic", "password": "whsec_ZGVtby1jYWxsYmFjay1zaWduaW5nLWtleQ=="}'

.venv/bin/python -m b2b_integrations validate include

# globex's SFTP drop folder: a small embedded server (asyncssh), seeded with one latin-1 ';' order file.
.venv/bin/python include/demo/sftp_server.py --port "$SFTP_PORT" --root "$SFTP_DIR/root" --keys "$SFTP_DIR/keys" --seed \
  > "$AIRFLOW_HOME/demo_sftp.log" 2>&1 &
SFTP_PID=$!
# acme's CRM: the demo SaaS app (contacts, companies, invoices) that the crm_contacts flows poll.
.venv/bin/python include/demo/crm_app.py --port "$CRM_PORT" --no-access-log > "$AIRFLOW_HOME/demo_crm.log" 2>&1 &
CRM_PID=$!

# Own process group, so stopping the demo stops the scheduler, API server, dag-processor and triggerer.
setsid .venv/bin/airflow standalone > "$AIRFLOW_HOME/standalone.log" 2>&1 &
AIRFLOW_PID=$!
stop() {
  trap - INT TERM EXIT
  echo; echo "demo: stopping Airflow ..."
  kill -TERM "$SFTP_PID" "$CRM_PID" 2>/dev/null || true
  kill -TERM -- "-$AIRFLOW_PID" 2>/dev/null || true
  for _ in $(seq 1 30); do kill -0 -- "-$AIRFLOW_PID" 2>/dev/null || break; sleep 1; done
  kill -KILL -- "-$AIRFLOW_PID" 2>/dev/null || true
  echo "demo: stopped"
}
trap stop INT TERM EXIT

echo "demo: starting Airflow (log: $AIRFLOW_HOME/standalone.log) ..."
for _ in $(seq 1 180); do
  if curl -fsS "http://127.0.0.1:$PORT/api/v2/monitor/health" > /dev/null 2>&1; then break; fi
  if ! kill -0 "$AIRFLOW_PID" 2>/dev/null; then echo "demo: Airflow exited; see $AIRFLOW_HOME/standalone.log" >&2; exit 1; fi
  sleep 1
done
PASSWORDS="$AIRFLOW_HOME/simple_auth_manager_passwords.json.generated"
for _ in $(seq 1 30); do [[ -s "$PASSWORDS" ]] && break; sleep 1; done

# The inventory flows run for real today: unpause them once the dag-processor has stored them.
( for _ in $(seq 1 60); do
    if .venv/bin/airflow dags unpause acme__inventory_sync__snapshot > /dev/null 2>&1; then
      for dag in acme__inventory_sync__low_stock_alerts globex__inventory_sync__snapshot \
        globex__inventory_sync__low_stock_alerts globex__partner_orders_sftp__orders \
        acme__crm_contacts__contacts acme__crm_contacts__invoices initech__billing_webhooks__invoice_events \
        acme__crm_hybrid__invoices_out globex__crm_hybrid__invoices_out umbrella__orders__place_order; do
        .venv/bin/airflow dags unpause "$dag" > /dev/null 2>&1 || true
      done
      echo "demo: inventory_sync, globex's SFTP import and acme's CRM import unpaused; first runs start now"
      # The demo CRM plays initech's billing provider: three signed webhooks to the receiver.
      sleep 15
      for n in 1 2 3; do
        curl -fsS -X POST "http://127.0.0.1:$CRM_PORT/admin/webhooks/send" -H 'content-type: application/json' \
          -d "{\"url\": \"http://127.0.0.1:$PORT/b2b/webhooks/initech/billing_webhooks/invoice_events\", \"secret\": \"demo-signing-secret\", \"scheme\": \"standard\", \"payload\": {\"invoice_id\": \"INV-DEMO-$n\", \"status\": \"paid\", \"amount_cents\": ${n}500, \"currency\": \"EUR\"}}" > /dev/null \
          || echo "demo: webhook $n not accepted (see $AIRFLOW_HOME/standalone.log)"
      done
      echo "demo: the demo CRM sent 3 signed webhooks to initech's billing flow"
      # Our app publishes paid invoices: acme gets both at its endpoint, globex only the one >= 100.00.
      TOKEN=$(.venv/bin/python -c "import json,sys,urllib.request as u; p=json.load(open(sys.argv[1]))['admin']; r=u.Request(sys.argv[2], json.dumps({'username':'admin','password':p}).encode(), {'content-type':'application/json'}); print(json.load(u.urlopen(r))['access_token'])" "$PASSWORDS" "http://127.0.0.1:$PORT/auth/token")
      curl -fsS -X POST "http://127.0.0.1:$PORT/b2b/events" -H "Authorization: Bearer $TOKEN" -H 'content-type: application/json' \
        -d '{"events": [
          {"type": "invoice.paid", "id": "evt_demo_1", "occurred_at": "2026-11-29T08:00:00Z", "data": {"account_id": "acme", "invoice_id": "INV-A1", "amount_cents": 4200}},
          {"type": "invoice.paid", "id": "evt_demo_2", "occurred_at": "2026-11-29T08:01:00Z", "data": {"account_id": "globex", "invoice_id": "INV-G1", "amount_cents": 4200}},
          {"type": "invoice.paid", "id": "evt_demo_3", "occurred_at": "2026-11-29T08:02:00Z", "data": {"account_id": "globex", "invoice_id": "INV-G2", "amount_cents": 125000}}]}' > /dev/null \
        && echo "demo: our app published 3 paid invoices (see the demo CRM's /admin/inbound/acme-invoices and /admin/inbound/globex-invoices)" \
        || echo "demo: publishing app events failed (see $AIRFLOW_HOME/standalone.log)"
      break
    fi
    sleep 5
  done ) &

cat <<INFO

  Airflow UI:  http://127.0.0.1:$PORT
  Login:       $(.venv/bin/python -c "import json,sys; d=json.load(open(sys.argv[1])); print('  '.join(f'user {u}  password {p}' for u, p in d.items()))" "$PASSWORDS" 2>/dev/null || echo "see $PASSWORDS")
  Plugin API:  http://127.0.0.1:$PORT/b2b/health
  Demo data:   sqlite3 $AIRFLOW_HOME/demo_warehouse.db 'select * from inventory_levels limit 5'
               sqlite3 $AIRFLOW_HOME/demo_app.db 'select * from partner_orders'
               sqlite3 $AIRFLOW_HOME/demo_app.db 'select count(*) from crm_contacts'
               sqlite3 $AIRFLOW_HOME/demo_app.db 'select * from invoice_events'   (from webhooks)
  Demo CRM:    http://127.0.0.1:$CRM_PORT/docs  (edit a contact, then trigger acme__crm_contacts__contacts)
  App events:  curl http://127.0.0.1:$CRM_PORT/admin/inbound/acme-invoices   (delivered by acme__crm_hybrid__invoices_out)
  Sync call:   see README "Synchronous integrations" (umbrella__orders__place_order)
  Reports:     trigger acme__invoice_reports__monthly_pdf; the PDF lands in /tmp/b2b-demo-reports
  SFTP folder: $SFTP_DIR/root/outbound/orders (drop more ';'-separated latin-1 CSV files here)

  Press Ctrl-C to stop.
INFO
wait "$AIRFLOW_PID"
