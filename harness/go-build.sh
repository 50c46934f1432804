# Sourced by the install-*.sh scripts that build a Go program from the Go module proxy:
# `go_build_workspace NAME GO_VERSION` checks for Go, creates "$cache/bin" and a private
# work folder "$work" (removed on exit), and points Go's module and build caches into it,
# so nothing leaks into ~/go and the ~1 GB they take is freed when done.
# Needs: $cache set by the caller.

go_build_workspace() {
    local name="$1" go_version="$2"
    if ! command -v go >/dev/null 2>&1; then
        echo "$(basename "$0"): 'go' ($go_version+) is required to build $name" >&2
        exit 1
    fi
    mkdir -p "$cache/bin"
    work="$(mktemp -d "$cache/.$name-build.XXXXXX")"
    # shellcheck disable=SC2064  # expand $work now: it is set once, here
    trap "rm -rf '$work'" EXIT
    # -modcacherw lets `rm -rf` delete the module cache.
    export GOMODCACHE="$work/mod" GOCACHE="$work/cache" GOPATH="$work/gopath"
    export GOFLAGS="-modcacherw -mod=readonly -buildvcs=false"
    # Static binaries, like upstream release builds; also means no C compiler is needed.
    export CGO_ENABLED=0
}
