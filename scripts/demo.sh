#!/usr/bin/env bash
# Set up (if needed) and run the demo: Airflow on the embedded default (SQLite, LocalExecutor via
# `airflow standalone`) with the example customers from include/. Ctrl-C stops Airflow and every child.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
# shellcheck source=demo-env.sh
source scripts/demo-env.sh
mkdir -p "$AIRFLOW_HOME"

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
  Sync call:   see docs/patterns/synchronous.md (umbrella__orders__place_order)
  Reports:     trigger acme__invoice_reports__monthly_pdf; the PDF lands in /tmp/b2b-demo-reports
  SFTP folder: $SFTP_DIR/root/outbound/orders (drop more ';'-separated latin-1 CSV files here)

  CLI:         in another terminal, source scripts/demo-env.sh first (docs/getting-started.md)

  Press Ctrl-C to stop.
INFO
wait "$AIRFLOW_PID"
