#!/usr/bin/env bash
# Install Docker Compose into "$BORG_CACHE_DIR/bin/docker-compose" (default cache:
# ~/.cache/borg-dqn), so that tests can validate compose.yaml with the real
# implementation (`docker-compose config --format json`) on machines without a Docker
# engine or the compose CLI plugin.
#
# Why built from source: Debian ships only Compose v1 (1.29, Python), which rejects the
# current Compose Specification (top-level `name:`, ...) and has no JSON output; the
# release binaries live on GitHub, which CI cannot reach. The Go module proxy can, and
# a static build takes about a minute on 2 cores.
#
# Why not `go install ...@version`: compose's go.mod has `exclude` directives, which
# `go install pkg@version` refuses; building inside the downloaded module honours them.
#
# Idempotent: does nothing when the binary already reports the pinned version.
# Env: BORG_CACHE_DIR, BORG_COMPOSE_VERSION (default below; v5.6.0+ needs a
# dependency version the module proxy does not serve, and Go >= 1.26.8).
set -euo pipefail

version="${BORG_COMPOSE_VERSION:-v5.5.1}"
cache="${BORG_CACHE_DIR:-$HOME/.cache/borg-dqn}"
bin="$cache/bin/docker-compose"

if [[ -x "$bin" ]] && [[ "$("$bin" version --short 2>/dev/null || true)" == "${version#v}" ]]; then
    echo "docker-compose $version already installed at $bin"
    exit 0
fi

major="${version%%.*}"                  # v5.5.1 -> v5
module="github.com/docker/compose/$major"

source "$(dirname "${BASH_SOURCE[0]}")/go-build.sh"
go_build_workspace compose 1.26

start=$SECONDS
echo "building docker-compose $version from $module (Go module proxy)..."
go mod download "$module@$version"
src="$GOMODCACHE/$module@$version"
(
    cd "$src"
    go build -trimpath \
        -ldflags "-s -w -X $module/internal.Version=$version" \
        -o "$work/docker-compose" ./cmd
)
"$work/docker-compose" version
mv -f "$work/docker-compose" "$bin"   # atomic within the cache filesystem
echo "installed $bin in $((SECONDS - start))s"
