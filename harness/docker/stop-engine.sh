#!/usr/bin/env bash
# Stop the dockerd that install-engine.sh started (its pidfile), and wait until it has
# exited; an engine that was already running before is left alone.
set -euo pipefail

state="${BORG_DOCKER_STATE:-${BORG_CACHE_DIR:-$HOME/.cache/borg-dqn}/dockerd}"
pidfile="$state/dockerd.pid"
deadline_s="${BORG_DOCKERD_DEADLINE_S:-120}"

if [[ ! -s "$pidfile" ]]; then
    echo "no dockerd started by install-engine.sh is running; nothing to stop"
    exit 0
fi
pid="$(cat "$pidfile")"
if ! kill -0 "$pid" 2>/dev/null; then
    echo "dockerd (pid $pid) has already exited"
    rm -f "$pidfile"
    exit 0
fi
echo "stopping dockerd (pid $pid)"
kill -TERM "$pid"
start=$SECONDS
# dockerd stops its containers (their grace periods) before it exits.
while kill -0 "$pid" 2>/dev/null; do
    if ((SECONDS - start > deadline_s)); then
        echo "stop-engine.sh: dockerd (pid $pid) still runs ${deadline_s}s after SIGTERM" >&2
        exit 1
    fi
    sleep 0.5
done
rm -f "$pidfile"
echo "dockerd stopped after $((SECONDS - start))s"
