"""Shared fixtures: a real redis-server on loopback for every integration test."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from borg_game.redis_server import EmbeddedRedis

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def redis_server() -> Iterator[EmbeddedRedis]:
    with EmbeddedRedis() as server:
        yield server


@pytest.fixture
def redis_client(redis_server: EmbeddedRedis) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_server.url)
    client.flushall()
    yield client
    client.close()


def agent_environment(**settings: object) -> dict[str, str]:
    """The process environment with only the given CONFIG_ settings (no stray CONFIG_ keys)."""
    environment = {key: value for key, value in os.environ.items() if not key.upper().startswith("CONFIG_")}
    environment.update({f"CONFIG_{key}": str(value) for key, value in settings.items()})
    environment["PYTHONUNBUFFERED"] = "1"
    return environment


class AgentProcess(subprocess.Popen[str]):
    """An agent process whose output goes to a file, so a chatty agent never blocks on a full pipe.

    `communicate()` waits for the process and returns that file's text, like a piped Popen would.
    """

    def __init__(self, args: list[str], cwd: Path, environment: dict[str, str], output: Path) -> None:
        self.output_path = output
        with output.open("w") as sink:
            super().__init__(args, cwd=cwd, env=environment, stdout=sink, stderr=subprocess.STDOUT, text=True)

    def communicate(self, input: str | None = None, timeout: float | None = None) -> tuple[str, str]:
        """Wait for the process; return its output so far (and no stderr: it goes to the same file)."""
        self.wait(timeout)
        return self.output(), ""

    def output(self) -> str:
        """What the agent has printed so far."""
        return self.output_path.read_text(errors="replace")


def spawn_agent(cwd: Path, **settings: object) -> AgentProcess:
    """Start `python -m borg_game` (the real entry point) with these settings; output to a file in `cwd`."""
    output = cwd / f"agent-{settings.get('agent_id', 'x')}-{time.monotonic_ns()}.out"
    return AgentProcess([sys.executable, "-m", "borg_game"], cwd, agent_environment(**settings), output)
