#!/usr/bin/env bash
# Prepare Elasticsearch for the stack: the users its services log in as, then the index
# templates of $TEMPLATE_DIR (one <name>.json per template). compose.yaml runs it once per
# `up` (service elasticsearch-setup), before Kibana and Logstash start; the tests run it
# against a real node with security on.
#
# Users (as $ELASTIC_USER, a superuser):
# - kibana_system, Elasticsearch's built-in user for Kibana's own connection: its password
#   becomes $KIBANA_SYSTEM_PASSWORD.
# - logstash_writer, a role and a user of that name (password $LOGSTASH_WRITER_PASSWORD)
#   holding only what Logstash's elasticsearch output needs: the cluster privilege
#   `monitor` (its version and license checks), and on borg-* indices `create_index` (a
#   new daily index) and `index` (documents written by id, a re-read one overwritten).
#
# Every step sets the same state again (a password, a role, PUT _index_template/<name>
# creates or replaces): running it again changes nothing but what .env changed. A
# template shapes the indices created after it, so a changed mapping reaches the next
# daily index (delete today's to have it at once).
#
# Env: ELASTICSEARCH_URL (default http://elasticsearch:9200), TEMPLATE_DIR (default: the
# templates/ folder beside this script), ELASTIC_USER (default elastic), ELASTIC_PASSWORD
# (empty: no authentication, for a node with security off), KIBANA_SYSTEM_PASSWORD and
# LOGSTASH_WRITER_PASSWORD (each empty: that user is left alone), SETUP_RETRIES (default
# 10: curl's retries, 3 s apart, of refused connections and 5xx). Passwords reach curl as
# a config on a file descriptor and request bodies on stdin: never on a command line.
set -euo pipefail

es="${ELASTICSEARCH_URL:-http://elasticsearch:9200}"
dir="${TEMPLATE_DIR:-$(dirname "$0")/templates}"
user="${ELASTIC_USER:-elastic}"
password="${ELASTIC_PASSWORD:-}"

fail() {
    echo "elasticsearch-setup: $*" >&2
    exit 1
}

shopt -s nullglob
templates=("$dir"/*.json)
((${#templates[@]} > 0)) || fail "no templates (*.json) in $dir"

# "text" with \ and " escaped: a JSON string, and a quoted value in a curl config.
quoted() {
    local text="${1//\\/\\\\}"
    printf '"%s"' "${text//\"/\\\"}"
}

# curl's config: the basic-auth credentials, when there is a password.
credentials() {
    if [[ -n "$password" ]]; then
        printf 'user = %s\n' "$(quoted "$user:$password")"
    fi
}

# compose waits for a healthy node; retries cover a node that is restarting anyway.
curl_es() {
    curl --silent --show-error --fail-with-body --retry "${SETUP_RETRIES:-10}" --retry-connrefused \
        --retry-delay 3 --config <(credentials) "$@"
}

# send METHOD PATH WHAT: the JSON body on stdin goes to Elasticsearch; fails naming WHAT.
send() {
    local response
    if ! response="$(curl_es -X "$1" "$es$2" -H 'Content-Type: application/json' --data-binary @-)"; then
        fail "$3 failed: $response"
    fi
    echo "elasticsearch-setup: $3: $response"
}

if [[ -n "${KIBANA_SYSTEM_PASSWORD:-}" ]]; then
    send POST /_security/user/kibana_system/_password "password of kibana_system" \
        <<<"{\"password\": $(quoted "$KIBANA_SYSTEM_PASSWORD")}"
fi

if [[ -n "${LOGSTASH_WRITER_PASSWORD:-}" ]]; then
    send PUT /_security/role/logstash_writer "role logstash_writer" <<'JSON'
{
  "cluster": ["monitor"],
  "indices": [{"names": ["borg-*"], "privileges": ["create_index", "index"]}]
}
JSON
    send PUT /_security/user/logstash_writer "user logstash_writer" <<<"{
  \"password\": $(quoted "$LOGSTASH_WRITER_PASSWORD"),
  \"roles\": [\"logstash_writer\"],
  \"full_name\": \"Borg-DQN Logstash (writes borg-* indices)\"
}"
fi

for file in "${templates[@]}"; do
    name="$(basename "$file" .json)"
    send PUT "/_index_template/$name" "template $name from $file" <"$file"
done
