#!/usr/bin/env bash
# Build stand-ins of the base images the project's Dockerfiles and compose.yaml name, from
# Debian packages, for a Docker engine that cannot reach an image registry (CI). Each is
# tagged with the exact name the project uses, at the versions of .env.example:
#   python:$PYTHON_VERSION-slim-bookworm   debootstrap + Debian's python3.11 (docker import)
#   redis:$REDIS_VERSION-alpine            redis/Dockerfile: Debian's redis-server
#   apache/kafka:$KAFKA_VERSION            kafka/Dockerfile: the harness's Kafka jars on Debian's JRE
# How each differs from the real image: README.md here. An image that already exists under
# its tag is kept (delete it to rebuild). Run as root (debootstrap, chroot), with the engine
# of install-engine.sh up and the Kafka jars fetched (`make kafka-jars`).
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
env_file="${BORG_ENV_FILE:-$repo/.env.example}"
cache="${BORG_CACHE_DIR:-$HOME/.cache/borg-dqn}"

version_of() {
    local value
    value="$(sed -n "s/^$1=//p" "$env_file" | tail -n 1)"
    if [[ -z "$value" ]]; then
        echo "build-stand-ins.sh: $1 is not set in $env_file" >&2
        exit 1
    fi
    printf '%s' "$value"
}
python_image="python:$(version_of PYTHON_VERSION)-slim-bookworm"
redis_image="redis:$(version_of REDIS_VERSION)-alpine"
kafka_version="$(version_of KAFKA_VERSION)"
kafka_image="apache/kafka:$kafka_version"

exists() { docker image inspect "$1" >/dev/null 2>&1; }

# The Debian mirror this host's apt uses for bookworm, read from apt's own configuration
# (sources.list or deb822 .sources alike), so no host name is written into any file here.
debian_mirror() {
    # shellcheck disable=SC2016  # $(REPO_URI) is apt's own field syntax, not the shell's
    apt-get indextargets --format '$(REPO_URI) $(CODENAME)' 2>/dev/null \
        | awk '$2 == "bookworm" { print $1; exit }'
}

build_python() {
    local mirror rootfs start=$SECONDS
    mirror="$(debian_mirror)"
    if [[ -z "$mirror" ]]; then
        echo "build-stand-ins.sh: apt has no bookworm source (apt-get indextargets); run apt-get update" >&2
        exit 1
    fi
    rootfs="$(mktemp -d "${TMPDIR:-/tmp}/borg-stand-in-rootfs.XXXXXX")"
    # shellcheck disable=SC2064  # expand now: the path is fixed
    trap "rm -rf '$rootfs'" EXIT
    echo "== $python_image: debootstrap bookworm from $mirror"
    debootstrap --variant=minbase bookworm "$rootfs" "$mirror" >"$rootfs.debootstrap.log" 2>&1 || {
        tail -n 30 "$rootfs.debootstrap.log" >&2
        exit 1
    }
    rm -f "$rootfs.debootstrap.log"
    # The host's certificate authorities, so that pip in the project's builds trusts what
    # this host trusts (a host behind a TLS-inspecting proxy, as CI may be).
    mkdir -p "$rootfs/usr/local/share/ca-certificates"
    if compgen -G "/usr/local/share/ca-certificates/*" >/dev/null; then
        cp -a /usr/local/share/ca-certificates/. "$rootfs/usr/local/share/ca-certificates/"
    fi
    cp /etc/resolv.conf "$rootfs/etc/resolv.conf"
    echo "== $python_image: Debian's python3.11, venv, pip"
    chroot "$rootfs" /bin/sh -ec '
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq
        apt-get install -y -qq --no-install-recommends \
            python3.11 python3.11-venv python3-pip ca-certificates netbase tzdata passwd >/dev/null
        update-ca-certificates >/dev/null
        ln -sf /usr/bin/python3.11 /usr/local/bin/python
        ln -sf /usr/bin/python3.11 /usr/local/bin/python3
        ln -sf /usr/bin/pip3 /usr/local/bin/pip
        apt-get clean
        rm -rf /var/lib/apt/lists/*'
    # The host's CA bundle too, when it has authorities outside /usr/local/share/ca-certificates.
    cp /etc/ssl/certs/ca-certificates.crt "$rootfs/etc/ssl/certs/ca-certificates.crt"
    : >"$rootfs/etc/resolv.conf"
    tar -C "$rootfs" -c . | docker import \
        -c 'ENV PATH=/usr/local/bin:/usr/local/sbin:/usr/sbin:/usr/bin:/sbin:/bin' \
        -c 'ENV LANG=C.UTF-8' \
        -c 'CMD ["python3"]' \
        - "$python_image" >/dev/null
    rm -rf "$rootfs"
    trap - EXIT
    echo "== $python_image: built in $((SECONDS - start))s"
}

build_from_dockerfile() {
    local image="$1" context="$2" start=$SECONDS
    shift 2
    echo "== $image: docker build $context"
    docker build --build-arg "BASE_IMAGE=$python_image" "$@" -t "$image" "$context" 2>&1 \
        | sed "s|^|  [$image] |"
    echo "== $image: built in $((SECONDS - start))s"
}

build_kafka() {
    local jars="$cache/kafka-$kafka_version" context
    if [[ ! -f "$jars/kafka_2.13-$kafka_version.jar" ]]; then
        echo "build-stand-ins.sh: no Kafka $kafka_version jars in $jars; run \`make kafka-jars\` first" >&2
        exit 1
    fi
    # The jars join the build context (kafka/ itself stays small in the repository).
    context="$(mktemp -d "${TMPDIR:-/tmp}/borg-stand-in-kafka.XXXXXX")"
    cp -a "$here/kafka/." "$context/"
    mkdir "$context/libs"
    cp "$jars"/*.jar "$context/libs/"
    build_from_dockerfile "$kafka_image" "$context"
    rm -rf "$context"
}

for image in "$python_image" "$redis_image" "$kafka_image"; do
    if exists "$image"; then
        echo "== $image: present, kept"
        continue
    fi
    case "$image" in
        "$python_image") build_python ;;
        "$redis_image") build_from_dockerfile "$redis_image" "$here/redis" ;;
        "$kafka_image") build_kafka ;;
    esac
done
