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

if ! command -v go >/dev/null 2>&1; then
    echo "install-kubecheck.sh: 'go' (1.25+) is required to build harness/kubecheck" >&2
    exit 1
fi

mkdir -p "$cache/bin"
work="$(mktemp -d "$cache/.kubecheck-build.XXXXXX")"
trap 'rm -rf "$work"' EXIT

# A private module and build cache, freed when done (see install-compose.sh).
export GOMODCACHE="$work/mod" GOCACHE="$work/cache" GOPATH="$work/gopath"
export GOFLAGS="-modcacherw -mod=readonly -buildvcs=false"
export CGO_ENABLED=0

start=$SECONDS
echo "building kubecheck from harness/kubecheck (Go module proxy)..."
(cd "$src" && go build -trimpath -ldflags "-s -w" -o "$work/kubecheck" .)
"$work/kubecheck" --version
mv -f "$work/kubecheck" "$bin"   # atomic within the cache filesystem
echo "$digest" > "$bin.sha256"
echo "installed $bin in $((SECONDS - start))s"
