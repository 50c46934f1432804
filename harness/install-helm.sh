#!/usr/bin/env bash
# Install Helm 3 into "$BORG_CACHE_DIR/bin/helm" (default cache: ~/.cache/borg-dqn), so
# that tests can lint and render the chart of deploy/helm/borg-dqn without a cluster.
#
# Why built from source: Helm's release binaries are downloaded from a site that CI cannot
# reach; the Go module proxy serves its source, and a static build takes about 6 CPU-minutes
# (as harness/install-compose.sh does for Docker Compose).
#
# The Kubernetes version that `helm lint` and `helm template` assume (.Capabilities) is set
# from the client-go version of Helm's go.mod, as Helm's own Makefile does.
#
# Idempotent: does nothing when the binary already reports the pinned version.
# Env: BORG_CACHE_DIR, BORG_HELM_VERSION (default below).
set -euo pipefail

version="${BORG_HELM_VERSION:-v3.22.0}"
cache="${BORG_CACHE_DIR:-$HOME/.cache/borg-dqn}"
bin="$cache/bin/helm"
module="helm.sh/helm/v3"

if [[ -x "$bin" ]] && [[ "$("$bin" version --template '{{.Version}}' 2>/dev/null || true)" == "$version" ]]; then
    echo "helm $version already installed at $bin"
    exit 0
fi

source "$(dirname "${BASH_SOURCE[0]}")/go-build.sh"
go_build_workspace helm 1.26

start=$SECONDS
echo "building helm $version from $module (Go module proxy)..."
go mod download "$module@$version"
src="$GOMODCACHE/$module@$version"
(
    cd "$src"
    # client-go v0.N.x belongs to Kubernetes 1.N.
    k8s_minor="$(go list -m -f '{{.Version}}' k8s.io/client-go | cut -d. -f2)"
    ldflags="-s -w -X $module/internal/version.version=$version -X $module/internal/version.gitTreeState=clean"
    for package in pkg/lint/rules pkg/chartutil; do
        ldflags+=" -X $module/$package.k8sVersionMajor=1 -X $module/$package.k8sVersionMinor=$k8s_minor"
    done
    go build -trimpath -ldflags "$ldflags" -o "$work/helm" ./cmd/helm
)
"$work/helm" version
mv -f "$work/helm" "$bin"   # atomic within the cache filesystem
echo "installed $bin in $((SECONDS - start))s"
