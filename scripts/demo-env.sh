# The demo's environment, for demo.sh and for a second terminal while the demo runs:
#   source scripts/demo-env.sh
# Afterwards `airflow ...` (dags list, unpause, trigger, connections add) and `python -m b2b_integrations`
# work against the running demo: its AIRFLOW_HOME (.airflow-demo, holding its SQLite metadata database),
# its DAG and plugin folders and its connections (env-var connections: nothing secret, nothing stored).
# Ports and AIRFLOW_HOME can be moved with B2B_DEMO_PORT, B2B_DEMO_CRM_PORT, B2B_DEMO_SFTP_PORT, AIRFLOW_HOME.
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export PATH="$REPO/.venv/bin:$PATH"  # airflow standalone starts its components as `airflow ...` from PATH
export AIRFLOW_HOME="${AIRFLOW_HOME:-$REPO/.airflow-demo}"
PORT="${B2B_DEMO_PORT:-8080}"
export AIRFLOW__CORE__DAGS_FOLDER="$REPO/dags"
export AIRFLOW__CORE__PLUGINS_FOLDER="$REPO/plugins"
export AIRFLOW__CORE__LOAD_EXAMPLES=False
export AIRFLOW__API__PORT="$PORT"
# Loopback only, like the demo CRM and SFTP server: the demo's admin password is printed and on disk.
export AIRFLOW__API__HOST=127.0.0.1
# Task processes report to the API server: on a non-default port they must be told where it is.
export AIRFLOW__CORE__EXECUTION_API_SERVER_URL="http://127.0.0.1:$PORT/execution/"
export AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL=10
# Synchronous calls wait for the scheduler: a shorter idle sleep took p50 1.34 s -> 0.89 s
# (benchmarks/sync_calls.py), for ~7% of a core more while idle.
export AIRFLOW__SCHEDULER__SCHEDULER_IDLE_SLEEP_TIME=0.2
export B2B_DATA_DIR="$AIRFLOW_HOME/b2b_data"

# Demo connections. The inventory flows load into a local SQLite "app database" (demo_warehouse), globex's
# order files come from the embedded SFTP server, acme's CRM is the demo CRM app (include/demo/crm_app.py;
# login/password = its OAuth client).
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
