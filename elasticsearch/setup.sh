#!/usr/bin/env bash
# Install the index templates of $TEMPLATE_DIR (one <name>.json per template) into
# Elasticsearch. compose.yaml runs it once per `up` (service elasticsearch-setup), before
# Logstash may create an index; the tests run it against a real node.
#
# PUT _index_template/<name> creates or replaces: running it again changes nothing. A
# template shapes the indices created after it, so a changed mapping reaches the next
# daily index (delete today's to have it at once).
#
# Env: ELASTICSEARCH_URL (default http://elasticsearch:9200), TEMPLATE_DIR (default: the
# templates/ folder beside this script), SETUP_RETRIES (default 10: curl's retries, 3 s
# apart, of refused connections and 5xx).
set -euo pipefail

es="${ELASTICSEARCH_URL:-http://elasticsearch:9200}"
dir="${TEMPLATE_DIR:-$(dirname "$0")/templates}"

shopt -s nullglob
templates=("$dir"/*.json)
if ((${#templates[@]} == 0)); then
    echo "elasticsearch-setup: no templates (*.json) in $dir" >&2
    exit 1
fi

# compose waits for a healthy node; retries cover a node that is restarting anyway.
curl_es() {
    curl --silent --show-error --fail-with-body --retry "${SETUP_RETRIES:-10}" --retry-connrefused \
        --retry-delay 3 "$@"
}

for file in "${templates[@]}"; do
    name="$(basename "$file" .json)"
    if ! response="$(curl_es -X PUT "$es/_index_template/$name" \
        -H 'Content-Type: application/json' --data-binary "@$file")"; then
        echo "elasticsearch-setup: installing template $name from $file failed: $response" >&2
        exit 1
    fi
    echo "elasticsearch-setup: template $name installed ($response)"
done
