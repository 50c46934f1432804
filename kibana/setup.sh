#!/usr/bin/env bash
# Import the Borg-DQN dashboard and its data views ($DASHBOARD_FILE, an .ndjson export)
# into Kibana, then make the training-log data view the default one. compose.yaml runs it
# once per `up` (service kibana-setup) after Kibana is healthy, logged in as `elastic`.
#
# Idempotent: the objects have fixed ids and the import overwrites them, so running it
# again updates the dashboard instead of adding a copy. Exits non-zero, printing Kibana's
# answer, when the import is not a complete success.
#
# Env: KIBANA_URL (default http://kibana:5601), DASHBOARD_FILE (default: dashboard.ndjson
# beside this script), DEFAULT_DATA_VIEW (default borg-training-log; empty: leave as is),
# ELASTIC_USER (default elastic) and ELASTIC_PASSWORD (the Elasticsearch user it logs in
# to Kibana as; no password: no login, for a Kibana without security), SETUP_RETRIES
# (default 10: curl's retries, 3 s apart, of refused connections and 5xx). The password
# reaches curl as a config on a file descriptor: never on a command line.
set -euo pipefail

kibana="${KIBANA_URL:-http://kibana:5601}"
file="${DASHBOARD_FILE:-$(dirname "$0")/dashboard.ndjson}"
default_view="${DEFAULT_DATA_VIEW-borg-training-log}"
user="${ELASTIC_USER:-elastic}"
password="${ELASTIC_PASSWORD:-}"

fail() {
    echo "kibana-setup: $*" >&2
    exit 1
}

[[ -r "$file" ]] || fail "cannot read $file"

# curl's config: the basic-auth credentials ("user:password", \ and " escaped), when
# there is a password.
credentials() {
    if [[ -n "$password" ]]; then
        local text="${user}:${password}"
        text="${text//\\/\\\\}"
        printf 'user = "%s"\n' "${text//\"/\\\"}"
    fi
}

# compose waits for a healthy Kibana; retries cover one that is still warming up anyway.
# Prints the body, then the HTTP status on a line of its own.
kibana_call() {
    curl --silent --show-error --retry "${SETUP_RETRIES:-10}" --retry-connrefused --retry-delay 3 \
        --config <(credentials) --write-out '\n%{http_code}' -H 'kbn-xsrf: borg-dqn' "$@"
}

answer="$(kibana_call -X POST "$kibana/api/saved_objects/_import?overwrite=true" \
    --form "file=@$file;type=application/ndjson")" || fail "import request to $kibana failed"
status="${answer##*$'\n'}"
body="${answer%$'\n'*}"

if [[ "$status" == 401 ]]; then
    fail "Kibana at $kibana refused the login of user $user (ELASTIC_USER/ELASTIC_PASSWORD; compose: ELASTIC_PASSWORD in .env): $body"
fi
# Kibana answers 200 even when some objects failed: {"success":false,"errors":[...]}.
if [[ "$status" != 200 ]]; then
    fail "import of $file answered HTTP $status: $body"
fi
if ! grep -Eq '"success": ?true' <<<"$body" || grep -Eq '"errors": ?\[' <<<"$body"; then
    fail "import of $file failed: $body"
fi
count="$(grep -Eo '"successCount": ?[0-9]+' <<<"$body" | grep -Eo '[0-9]+$' || true)"
echo "kibana-setup: imported ${count:-?} objects from $file"

if [[ -n "$default_view" ]]; then
    answer="$(kibana_call -X POST "$kibana/api/data_views/default" -H 'Content-Type: application/json' \
        --data "{\"data_view_id\":\"$default_view\",\"force\":true}")" || fail "default data view request failed"
    status="${answer##*$'\n'}"
    [[ "$status" == 200 ]] || fail "setting the default data view answered HTTP $status: ${answer%$'\n'*}"
    echo "kibana-setup: default data view is $default_view"
fi

echo "kibana-setup: dashboard at ${KIBANA_PUBLIC_URL:-http://localhost:5601}/app/dashboards#/view/borg-dqn"
