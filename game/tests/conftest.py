"""Shared fixtures: a real redis-server on loopback for every integration test."""

from __future__ import annotations

import os
import subprocess
import sys
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


def spawn_agent(cwd: Path, **settings: object) -> subprocess.Popen[str]:
    """Start `python -m borg_game` (the real entry point) with these settings."""
    return subprocess.Popen(
        [sys.executable, "-m", "borg_game"],
        cwd=cwd,
        env=agent_environment(**settings),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
