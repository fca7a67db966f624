#!/usr/bin/env bash
# The instances API end to end with curl: onboard a customer, give it an integration, reconfigure it,
# activate it, let the customer see only its own instance, upgrade it to a new template version,
# look at its history and status, and deactivate it. docs/instances-api.md shows this file;
# tests/instances/test_instances_api_e2e.py runs it against a real API server.
#   B2B            the Airflow API server (default http://127.0.0.1:8080, the demo's)
#   AIRFLOW_USER   an Airflow user allowed to edit DAGs (default admin)
#   AIRFLOW_PASSWORD its password (the demo prints it)
#   CRM_URL        the customer's CRM (default the demo CRM, http://127.0.0.1:8090)
set -euo pipefail
B2B="${B2B:-http://127.0.0.1:8080}"
API="$B2B/b2b/api/v1"
JSON=(-H "Content-Type: application/json")

# call METHOD PATH [curl args...]: prints "<status> <body>"; the body goes to $BODY, the ETag to $ETAG
call() {
  local method=$1 path=$2
  shift 2
  local headers
  headers=$(mktemp)
  BODY=$(curl -s -X "$method" -D "$headers" "${AUTH[@]}" "$@" "$API$path")
  STATUS=$(head -1 "$headers" | cut -d' ' -f2)
  ETAG=$(grep -i '^etag:' "$headers" | cut -d' ' -f2- | tr -d '\r' || true)
  rm -f "$headers"
  echo "$method $path -> $STATUS"
}

# 1. The SaaS backend logs in with Airflow's own auth.
TOKEN=$(curl -s -X POST "$B2B/auth/token" "${JSON[@]}" \
  -d "{\"username\": \"${AIRFLOW_USER:-admin}\", \"password\": \"$AIRFLOW_PASSWORD\"}" | jq -r .access_token)
AUTH=(-H "Authorization: Bearer $TOKEN")

# 2. The marketplace: what a customer may activate, with a JSON Schema of its config and its connections.
call GET /marketplace/crm_contacts
echo "$BODY" | jq -c '{name, version, versions, variables: (.config_schema.properties | keys), slots: [.connections[].name]}'

# 3. Onboard a customer and give it crm_contacts, pinned to version 1 (new instances start inactive).
call POST /customers "${JSON[@]}" -d '{"id": "initrode", "name": "Initrode Inc."}'
call PUT /customers/initrode/instances/crm_contacts "${JSON[@]}" -d '{
  "version": "1",
  "config": {"page_limit": 500},
  "connections": {"crm_api": "initrode_crm"}}'
echo "$BODY" | jq -c '{template_version, active, etag}'

# 3b. Its CRM credentials become an Airflow connection (the file and the history get only its id); test it.
call PUT /customers/initrode/instances/crm_contacts/credentials/crm_api "${JSON[@]}" -d "{
  \"kind\": \"oauth2_client_credentials\", \"base_url\": \"${CRM_URL:-http://127.0.0.1:8090}\",
  \"client_id\": \"demo-client\", \"client_secret\": \"demo-secret\"}"
echo "$BODY" | jq -c '{conn_id, kind, configured}'
call POST /customers/initrode/instances/crm_contacts/credentials/crm_api/test
echo "$BODY" | jq -c '{ok, reason}'
call GET /customers/initrode/instances/crm_contacts   # its current ETag: binding the credentials changed it

# 4. A value the template does not allow is refused with its key path; nothing changes.
call PUT /customers/initrode/instances/crm_contacts "${JSON[@]}" -H "If-Match: $ETAG" \
  -d '{"version": "1", "config": {"page_limit": 5000}, "connections": {"crm_api": "initrode_crm"}}'
echo "$BODY" | jq -c '.problems[] | {key_path, message}'

# 5. Reconfigure with the ETag just read (If-Match), so a concurrent change is never overwritten.
call GET /customers/initrode/instances/crm_contacts
call PUT /customers/initrode/instances/crm_contacts "${JSON[@]}" -H "If-Match: $ETAG" \
  -d "$(echo "$BODY" | jq -c '.settings | .config.page_limit = 250 | .flows = {"invoices": {"enabled": false}}')"
STALE=$(echo "$BODY" | jq -r .etag)
call PUT /customers/initrode/instances/crm_contacts "${JSON[@]}" -H 'If-Match: "not-the-current-etag"' -d '{}'

# 6. Activate: its DAGs are unpaused (a deactivated instance keeps the events that arrive meanwhile).
call POST /customers/initrode/instances/crm_contacts/activate
echo "$BODY" | jq -c '{active, detail}'

# 7. The customer's own token (short-lived, one customer): its own instance yes, anyone else's no.
call POST /customers/initrode/tokens "${JSON[@]}" -d '{"scopes": ["read"], "ttl_seconds": 900}'
CUSTOMER_TOKEN=$(echo "$BODY" | jq -r .token)
ENGINEER=("${AUTH[@]}")
AUTH=(-H "Authorization: Bearer $CUSTOMER_TOKEN")
call GET /customers/initrode/instances/crm_contacts
call GET /customers/acme/instances/crm_contacts
AUTH=("${ENGINEER[@]}")

# 8. Upgrade to version 2: a dry run first says what would change and what would fail, then the rollout.
call POST /integrations/crm_contacts/rollouts "${JSON[@]}" -d '{"to_version": "2", "customers": ["initrode"]}'
echo "$BODY" | jq -c '{ok, items: [.items[] | {customer, from_version, to_version, changes, problems}]}'
call POST /integrations/crm_contacts/rollouts "${JSON[@]}" \
  -d '{"to_version": "2", "customers": ["initrode"], "dry_run": false}'
echo "$BODY" | jq -c '{ok, applied: [.items[] | {customer, applied}]}'

# 9. Troubleshoot: every version with who changed what, and each flow's status.
call GET /customers/initrode/instances/crm_contacts/versions
echo "$BODY" | jq -c '.versions[] | {version, by, action, changes: [.changes[].path]}'
call GET /customers/initrode/instances/crm_contacts/status
echo "$BODY" | jq -c '{health, flows: [.flows[] | {flow, paused: .is_paused}]}'

# 10. Deactivate: the DAGs are paused; the instance and its history stay.
call POST /customers/initrode/instances/crm_contacts/deactivate
echo "$BODY" | jq -c '{active, detail}'
[ -n "$STALE" ]
