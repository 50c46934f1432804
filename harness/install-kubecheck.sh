#!/usr/bin/env bash
# Install kubecheck (harness/kubecheck: strict decoding of manifests into the Go API types
# of one Kubernetes release) into "$BORG_CACHE_DIR/bin/kubecheck" (default cache:
# ~/.cache/borg-dqn), for tests/test_helm.py.
#
# Why our own small program: schema validators such as kubeconform download their JSON
# schemas from GitHub at run time, which CI cannot reach. The API types themselves come
# from the Go module proxy (k8s.io/api, pinned with its go.sum in harness/kubecheck), so
# the check needs nothing else offline. The build takes about 2 CPU-minutes.
#
# Idempotent: rebuilds only when harness/kubecheck's sources changed (their hash is kept
# next to the binary).
# Env: BORG_CACHE_DIR.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
src="$here/kubecheck"
cache="${BORG_CACHE_DIR:-$HOME/.cache/borg-dqn}"
bin="$cache/bin/kubecheck"
digest="$(cat "$src/go.mod" "$src/go.sum" "$src"/*.go | sha256sum | cut -d' ' -f1)"

if [[ -x "$bin" ]] && [[ "$(cat "$bin.sha256" 2>/dev/null || true)" == "$digest" ]]; then
    echo "kubecheck already installed at $bin ($("$bin" --version))"
    exit 0
fi

source "$here/go-build.sh"
go_build_workspace kubecheck 1.25

start=$SECONDS
echo "building kubecheck from harness/kubecheck (Go module proxy)..."
(cd "$src" && go build -trimpath -ldflags "-s -w" -o "$work/kubecheck" .)
"$work/kubecheck" --version
mv -f "$work/kubecheck" "$bin"   # atomic within the cache filesystem
echo "$digest" > "$bin.sha256"
echo "installed $bin in $((SECONDS - start))s"
