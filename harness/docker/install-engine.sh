#!/usr/bin/env bash
# Install the Docker engine from Debian and start it, for the Docker stack test
# (`make test-docker`) on a Debian bookworm CI machine without systemd. Run as root.
#
# - apt: docker.io (dockerd, containerd, runc), iptables (compose's bridge networks) and
#   debootstrap (the stand-in base images, build-stand-ins.sh); skipped when present.
# - dockerd is started by hand with the overlay2 storage driver, its own pidfile and log
#   under $BORG_DOCKER_STATE (default ~/.cache/borg-dqn/dockerd), then this waits until
#   `docker info` answers. An engine that already answers is left alone and no pidfile is
#   written, so stop-engine.sh stops only an engine this script started.
set -euo pipefail

state="${BORG_DOCKER_STATE:-${BORG_CACHE_DIR:-$HOME/.cache/borg-dqn}/dockerd}"
pidfile="$state/dockerd.pid"
logfile="$state/dockerd.log"
deadline_s="${BORG_DOCKERD_DEADLINE_S:-120}"

if [[ $EUID -ne 0 ]]; then
    echo "install-engine.sh: run as root (it installs packages and starts dockerd)" >&2
    exit 1
fi

start=$SECONDS
missing=()
command -v dockerd >/dev/null || missing+=(docker.io)
command -v iptables >/dev/null || missing+=(iptables)
command -v debootstrap >/dev/null || missing+=(debootstrap)
if ((${#missing[@]})); then
    echo "installing ${missing[*]} with apt..."
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    echo "installed ${missing[*]} in $((SECONDS - start))s"
fi

if docker info >/dev/null 2>&1; then
    echo "a Docker engine is already running; using it (stop-engine.sh will leave it running)"
    exit 0
fi

mkdir -p "$state"
echo "starting dockerd (log: $logfile)"
# setsid: the engine outlives this script and the make step that ran it; stop-engine.sh ends it.
setsid dockerd --storage-driver=overlay2 --pidfile "$pidfile" >"$logfile" 2>&1 </dev/null &
dockerd_pid=$!
until docker info >/dev/null 2>&1; do
    if ! kill -0 "$dockerd_pid" 2>/dev/null; then
        echo "install-engine.sh: dockerd exited; the end of $logfile:" >&2
        tail -n 30 "$logfile" >&2
        exit 1
    fi
    if ((SECONDS - start > deadline_s)); then
        echo "install-engine.sh: dockerd did not answer \`docker info\` within ${deadline_s}s; the end of $logfile:" >&2
        tail -n 30 "$logfile" >&2
        kill "$dockerd_pid"
        exit 1
    fi
    sleep 0.5
done
echo "dockerd $(docker version --format '{{.Server.Version}}') is up (pid $dockerd_pid) after $((SECONDS - start))s"
