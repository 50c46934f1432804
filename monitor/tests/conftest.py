"""Real servers on loopback: a redis-server and a KRaft Kafka broker, and the real monitor process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from borg_game.redis_server import EmbeddedRedis
from borg_harness.kafka_broker import KafkaBroker
from confluent_kafka import Consumer, KafkaError

REPO_ROOT = Path(__file__).resolve().parents[2]
SCHEMA_PATH = REPO_ROOT / "schemas" / "memory_monitoring.schema.json"


@pytest.fixture(scope="session")
def redis_server() -> Iterator[EmbeddedRedis]:
    with EmbeddedRedis() as server:
        yield server


@pytest.fixture(scope="session")
def kafka_broker() -> Iterator[KafkaBroker]:
    with KafkaBroker() as broker:
        yield broker


@pytest.fixture(scope="session")
def memory_schema() -> jsonschema.Draft202012Validator:
    schema = json.loads(SCHEMA_PATH.read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER)


def schema_errors(validator: jsonschema.Draft202012Validator, message: dict[str, Any]) -> list[str]:
    return [f"{'/'.join(map(str, error.absolute_path))}: {error.message}" for error in validator.iter_errors(message)]


def monitor_environment(**settings: object) -> dict[str, str]:
    """The process environment with only the given CONFIG_ settings."""
    environment = {key: value for key, value in os.environ.items() if not key.upper().startswith("CONFIG_")}
    environment.update({f"CONFIG_{key}": str(value) for key, value in settings.items()})
    environment["PYTHONUNBUFFERED"] = "1"
    return environment


def spawn_monitor(cwd: Path, pythonpath: Path | None = None, **settings: object) -> subprocess.Popen[str]:
    """Start `python -m borg_monitor` (the real entry point), its log going to cwd/monitor.log;
    `pythonpath` goes first on its module search path."""
    environment = monitor_environment(**settings)
    if pythonpath is not None:
        environment["PYTHONPATH"] = os.pathsep.join(filter(None, [str(pythonpath), environment.get("PYTHONPATH")]))
    log = (cwd / "monitor.log").open("w")
    return subprocess.Popen(
        [sys.executable, "-m", "borg_monitor"],
        cwd=cwd,
        env=environment,
        stdout=log,
        stderr=subprocess.STDOUT,
        text=True,
    )


def wait_for(condition: Callable[[], bool], timeout: float, what: str, interval: float = 0.1) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


class TopicReader:
    """A consumer of one topic from its beginning, collecting decoded JSON messages."""

    def __init__(self, bootstrap_servers: str, topic: str) -> None:
        self.messages: list[dict[str, Any]] = []
        self._consumer = Consumer(
            {
                "bootstrap.servers": bootstrap_servers,
                "group.id": f"test-{uuid.uuid4()}",
                "auto.offset.reset": "earliest",
                "enable.auto.commit": False,
                "log_level": 3,
            }
        )
        self._consumer.subscribe([topic])

    def poll(self, seconds: float) -> list[dict[str, Any]]:
        """Read for `seconds`; return all messages so far."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            message = self._consumer.poll(0.2)
            if message is None:
                continue
            error = message.error()
            if error is not None:
                assert error.code() in (KafkaError._PARTITION_EOF, KafkaError.UNKNOWN_TOPIC_OR_PART), error
                continue
            value = message.value()
            assert value is not None
            self.messages.append(json.loads(value))
        return self.messages

    def poll_until(self, condition: Callable[[list[dict[str, Any]]], bool], timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not condition(self.messages):
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout}s waiting for {what}; got {len(self.messages)}")
            self.poll(0.5)

    def close(self) -> None:
        self._consumer.close()
