"""The project's stack on a real Docker engine, for tests/test_stack_in_docker.py: the engine
and the stand-in base images (harness/docker/), the images built with `docker compose build`,
and one compose project of its own (a throwaway .env with fresh passwords and free host
ports), driven with the compose CLI and inspected with `docker inspect` / `docker logs`."""

from __future__ import annotations

import json
import re
import secrets
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import redis
from borg_harness.compose import find_compose

from conftest import ENV_EXAMPLE, REPO_ROOT

HARNESS_DIR = REPO_ROOT / "harness" / "docker"
# The services the test runs: Elasticsearch, Logstash and Kibana have no stand-in image.
SERVICES = ("redis", "kafka", "kafka-topics", "game", "monitor")
BUILT = ("game", "monitor")
AGENTS = 2
# Disk a build of the game image needs with nothing cached: torch and its CUDA wheels
# installed (~6 GB) while their downloads (~3 GB) are still on disk, and some margin.
GAME_BUILD_DISK_GIB = 12
# .env.example's empty secret lines; each gets a fresh random value, as `make .env` does.
STACK_SECRETS = (
    "REDIS_PASSWORD",
    "REDIS_MONITOR_PASSWORD",
    "ELASTIC_PASSWORD",
    "KIBANA_PASSWORD",
    "LOGSTASH_PASSWORD",
    "KIBANA_ENCRYPTION_KEY",
)

T = TypeVar("T")


def wait_for(condition: Callable[[], T | None], timeout: float, what: str, poll: float = 1.0) -> T:
    """Poll `condition` until it returns something truthy (returned), or fail after `timeout` s."""
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        assert time.monotonic() < deadline, f"timed out after {timeout:.0f}s waiting for {what}"
        time.sleep(poll)


def run_step(argv: list[str], what: str, timeout: float, env: Mapping[str, str] | None = None) -> float:
    """Run a long step with its output streaming to the console (its progress); its seconds."""
    print(f"\n=== {what}: {' '.join(argv)}", flush=True)
    started = time.monotonic()
    subprocess.run(argv, check=True, timeout=timeout, env=None if env is None else dict(env))
    seconds = time.monotonic() - started
    print(f"=== {what}: {seconds:.0f}s", flush=True)
    return seconds


def free_port() -> int:
    """An unused loopback port for a published service."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def docker(*args: str, timeout: float = 120) -> str:
    """Run the docker CLI; its stdout (a failure raises with its stderr)."""
    proc = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout, check=False)
    assert proc.returncode == 0, f"docker {' '.join(args)} exited {proc.returncode}: {proc.stderr[-2000:]}"
    return proc.stdout


def require_disk_for_build(image: str, gib: float) -> None:
    """Fail at once, naming what is short, when `image` must be built and the engine's disk
    has less than `gib` free: better than a build that dies half way with ENOSPC."""
    if subprocess.run(["docker", "image", "inspect", image], capture_output=True, check=False).returncode == 0:
        return  # built before: its layers are cached, the build adds little
    root = docker("info", "--format", "{{.DockerRootDir}}").strip()
    free = shutil.disk_usage(root).free / 2**30
    assert free >= gib, (
        f"building {image} needs about {gib} GiB free in {root}; {free:.1f} GiB are "
        "(`docker image prune` and `docker builder prune` free what earlier builds left)"
    )


@dataclass
class Container:
    """One container as `docker inspect` saw it."""

    id: str
    name: str
    state: dict[str, Any]
    restart_count: int

    @property
    def exit_code(self) -> int:
        """The exit status of the last run."""
        return int(self.state["ExitCode"])

    def logs(self) -> str:
        """Everything the container wrote, over all its runs."""
        proc = subprocess.run(
            ["docker", "logs", self.id], capture_output=True, text=True, timeout=60, check=False, errors="replace"
        )
        return proc.stdout + proc.stderr


class Stack:
    """A compose project of the repository's compose files plus the CPU override, with its
    own name, .env (env_file of the game and monitor too) and free host ports."""

    def __init__(self, workdir: Path, config: Mapping[str, str]) -> None:
        self.project = f"borg-dqn-test-{uuid.uuid4().hex[:8]}"
        self.workdir = workdir
        self.env_file = workdir / ".env"
        self.redis_port = free_port()
        self.kafka_port = free_port()
        self.passwords = {key: secrets.token_hex(24) for key in STACK_SECRETS}
        # compose.yaml's `env_file: .env` names the repository's .env, which the test must
        # neither need nor touch: an override points both services at the throwaway one.
        override = workdir / "compose.test.yaml"
        override.write_text(
            "services:\n"
            + "".join(f"  {service}:\n    env_file: !override\n      - {self.env_file}\n" for service in BUILT)
        )
        self.files = [REPO_ROOT / "compose.yaml", REPO_ROOT / "compose.cpu.yaml", REPO_ROOT / "compose.ports.yaml"]
        self.files.append(override)
        self.write_env(config)

    def write_env(self, config: Mapping[str, str]) -> None:
        """.env.example with fresh passwords, this project's host ports and `config`
        (CONFIG_ keys without the prefix), as a user edits .env."""
        text = ENV_EXAMPLE.read_text()
        for key, value in self.passwords.items():
            text, count = re.subn(rf"^{key}=$", f"{key}={value}", text, flags=re.MULTILINE)
            assert count == 1, f".env.example has no empty line {key}="
        text += f"\nREDIS_PORT={self.redis_port}\nKAFKA_PORT={self.kafka_port}\n"
        text += "".join(f"CONFIG_{key}={value}\n" for key, value in config.items())
        self.env_file.write_text(text)
        self.env_file.chmod(0o600)

    def argv(self, *args: str) -> list[str]:
        """The compose command line of this project."""
        files = [item for file in self.files for item in ("-f", str(file))]
        return [
            *find_compose(),
            "--project-name",
            self.project,
            "--project-directory",
            str(REPO_ROOT),
            "--env-file",
            str(self.env_file),
            *files,
            *args,
        ]

    def compose(self, *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
        """Run a compose command, its output captured (shown when it fails)."""
        proc = subprocess.run(self.argv(*args), capture_output=True, text=True, timeout=timeout, check=False)
        assert proc.returncode == 0, f"compose {' '.join(args)} exited {proc.returncode}:\n{proc.stderr[-4000:]}"
        return proc

    def up(self, timeout: float = 900) -> None:
        """`up -d --scale game=2` of SERVICES: returns once the health gates let the agents start."""
        self.compose("up", "--detach", "--no-build", "--scale", f"game={AGENTS}", *SERVICES, timeout=timeout)

    def containers(self, service: str, *, all_states: bool = True) -> list[Container]:
        """The service's containers (stopped ones too unless `all_states` is false)."""
        ids = self.compose("ps", "--quiet", *(["--all"] if all_states else []), service).stdout.split()
        if not ids:
            return []
        found = json.loads(docker("inspect", *ids))
        return [
            Container(item["Id"], item["Name"].lstrip("/"), item["State"], int(item["RestartCount"])) for item in found
        ]

    def image(self, service: str) -> str:
        """The image a service runs, as compose resolves it (the CPU override's tag for game)."""
        model = json.loads(self.compose("config", "--format", "json").stdout)
        return str(model["services"][service]["image"])

    def volumes(self) -> set[str]:
        """The names of this project's volumes."""
        out = docker("volume", "ls", "--quiet", "--filter", f"label=com.docker.compose.project={self.project}")
        return set(out.split())

    def redis(self) -> redis.Redis:
        """A client of the stack's Redis as its default user, through the published port."""
        return redis.Redis(host="127.0.0.1", port=self.redis_port, password=self.passwords["REDIS_PASSWORD"])

    @property
    def kafka_bootstrap_servers(self) -> str:
        """Kafka's EXTERNAL listener, published on this host."""
        return f"localhost:{self.kafka_port}"
