"""The training log on a real Kafka broker: real agents (`python -m borg_game`), real Redis,
a KRaft broker from borg_harness, and a confluent-kafka consumer reading what arrived."""

from __future__ import annotations

import json
import math
import os
import re
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from borg_common.kafka_producer import KafkaJsonProducer, encode_message
from borg_harness.kafka_broker import KafkaBroker
from confluent_kafka import Consumer, KafkaError

from borg_game.redis_server import EmbeddedRedis, free_port
from tests.conftest import REPO_ROOT, agent_environment

SCHEMA_PATH = REPO_ROOT / "schemas" / "training_log.schema.json"
SINK_COUNTERS = re.compile(
    r"training-log messages to Kafka: sent (\d+), delivered (\d+), failed (\d+), dropped (\d+), "
    r"undelivered at exit (\d+)"
)


@pytest.fixture(scope="session")
def kafka_broker() -> Iterator[KafkaBroker]:
    with KafkaBroker() as broker:
        yield broker


@pytest.fixture(scope="session")
def training_log_schema() -> jsonschema.Draft202012Validator:
    schema = json.loads(SCHEMA_PATH.read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER)


def schema_errors(validator: jsonschema.Draft202012Validator, message: dict[str, Any]) -> list[str]:
    error = jsonschema.exceptions.best_match(validator.iter_errors(message))
    return [] if error is None else [f"{message.get('type')}: {error.message}"]


def quick_agent_settings(tmp_path: Path, name: str, redis_url: str, **overrides: object) -> dict[str, object]:
    """A CartPole agent that shows every record type within a few seconds."""
    settings: dict[str, object] = {
        "env_id": "CartPole-v1",
        "device": "cpu",
        "mlp_hidden_sizes": "64,64",
        "total_steps": 1_200,
        "learning_starts": 200,
        "train_log_interval": 25,
        "eval_interval": 400,
        "eval_episodes": 2,
        "checkpoint_interval": 1_000_000,
        "resume": "false",
        "tensorboard_dir": "",
        "model_store": tmp_path / "models",
        "training_log_file": tmp_path / f"{name}.jsonl",
        "redis_url": redis_url,
        "replay_capacity": 20_000,
        "kafka_linger_ms": 10,
    }
    settings.update(overrides)
    return settings


def spawn(tmp_path: Path, name: str, settings: dict[str, object]) -> subprocess.Popen[str]:
    """`python -m borg_game`, its log to a file (a pipe nobody reads would stall the agent)."""
    log = (tmp_path / f"{name}.log").open("w")
    return subprocess.Popen(
        [sys.executable, "-m", "borg_game"],
        cwd=tmp_path,
        env=agent_environment(**settings),
        stdout=log,
        stderr=subprocess.STDOUT,
        text=True,
    )


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def consume(
    bootstrap_servers: str, topic: str, until: Callable[[list[dict[str, Any]]], bool], timeout: float
) -> list[dict[str, Any]]:
    """Read `topic` from its start until `until(messages)` holds or `timeout` passes."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap_servers,
            "group.id": f"test-{uuid.uuid4()}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
            "log_level": 3,
        }
    )
    consumer.subscribe([topic])
    messages: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout
    try:
        while not until(messages) and time.monotonic() < deadline:
            for message in consumer.consume(1_000, timeout=0.5):
                error = message.error()
                if error is not None:
                    assert error.code() in (KafkaError._PARTITION_EOF, KafkaError.UNKNOWN_TOPIC_OR_PART), error
                    continue
                value = message.value()
                assert value is not None
                messages.append(json.loads(value))
    finally:
        consumer.close()
    return messages


def sink_counters(log: str) -> dict[str, int]:
    match = SINK_COUNTERS.search(log)
    assert match is not None, log[-3_000:]
    return dict(zip(["sent", "delivered", "failed", "dropped", "undelivered"], map(int, match.groups()), strict=True))


def test_two_agents_stream_every_record_type_schema_valid(
    tmp_path: Path,
    redis_server: EmbeddedRedis,
    kafka_broker: KafkaBroker,
    training_log_schema: jsonschema.Draft202012Validator,
) -> None:
    topic = f"training_log_{uuid.uuid4().hex[:8]}"
    run_id = f"kafka-{uuid.uuid4().hex[:6]}"
    agents = {
        name: spawn(
            tmp_path,
            name,
            quick_agent_settings(
                tmp_path,
                name,
                redis_server.url,
                agent_index=index,
                run_id=run_id,
                kafka_bootstrap_servers=kafka_broker.bootstrap_servers,
                training_log_topic=topic,
            ),
        )
        for index, name in enumerate(["agent-a", "agent-b"])
    }
    for name, agent in agents.items():
        assert agent.wait(timeout=300) == 0, (tmp_path / f"{name}.log").read_text()[-3_000:]

    logged = [record for name in agents for record in read_jsonl(tmp_path / f"{name}.jsonl")]
    messages = consume(kafka_broker.bootstrap_servers, topic, lambda got: len(got) >= len(logged), timeout=60)

    # Every record the agents logged arrived, exactly once, field for field.
    assert sorted(map(json.dumps, messages)) == sorted(map(json.dumps, logged))
    for message in messages:
        assert schema_errors(training_log_schema, message) == []
    agent_ids = {message["agent_id"] for message in messages}
    assert len(agent_ids) == 2
    for agent_id in agent_ids:
        kinds = Counter(message["type"] for message in messages if message["agent_id"] == agent_id)
        assert set(kinds) == {"episode", "train", "eval"}, kinds
    assert {message["run_id"] for message in messages} == {run_id}
    for name in agents:
        counters = sink_counters((tmp_path / f"{name}.log").read_text())
        assert counters["sent"] == counters["delivered"] > 0
        assert counters["failed"] == counters["dropped"] == counters["undelivered"] == 0


def test_a_broker_outage_loses_no_message_and_play_goes_on(
    tmp_path: Path, redis_server: EmbeddedRedis, kafka_broker: KafkaBroker
) -> None:
    """Stop the broker under a running agent, start it again: the agent plays and logs on
    through the outage, and every record arrives once."""
    topic = f"training_log_{uuid.uuid4().hex[:8]}"
    settings = quick_agent_settings(
        tmp_path,
        "agent",
        redis_server.url,
        total_steps=100_000_000,  # runs until stopped
        learning="false",  # nothing but play, share and log
        eval_interval=0,
        kafka_bootstrap_servers=kafka_broker.bootstrap_servers,
        training_log_topic=topic,
    )
    agent = spawn(tmp_path, "agent", settings)
    log_file = tmp_path / "agent.jsonl"

    def wait_for_records(count: int, timeout: float = 300.0) -> int:
        """Wait until the agent's own log holds `count` records; return how many it holds."""
        deadline = time.monotonic() + timeout
        while (held := len(read_jsonl(log_file)) if log_file.exists() else 0) < count:
            assert agent.poll() is None, (tmp_path / "agent.log").read_text()[-3_000:]
            assert time.monotonic() < deadline, f"{held} of {count} records after {timeout:.0f}s"
            time.sleep(0.2)
        return held

    try:
        wait_for_records(50)
        kafka_broker.stop()
        at_stop = wait_for_records(0)
        # The event that shows play was not held back: 100 more records while no broker answers.
        produced_during_outage = wait_for_records(at_stop + 100) - at_stop
        kafka_broker.start()  # same port, same data
        produced_before_return = len(read_jsonl(log_file))
        consume(
            kafka_broker.bootstrap_servers, topic, lambda got: len(got) >= produced_before_return, timeout=60
        )  # what was buffered during the outage is delivered while the agent plays on
        assert agent.poll() is None, (tmp_path / "agent.log").read_text()[-3_000:]
    finally:
        kafka_broker.start()  # a no-op unless the test failed during the outage
        agent.send_signal(signal.SIGTERM)
        exit_code = agent.wait(timeout=60)
    log = (tmp_path / "agent.log").read_text()
    assert exit_code == 0, log[-3_000:]

    logged = read_jsonl(log_file)
    messages = consume(kafka_broker.bootstrap_servers, topic, lambda got: len(got) >= len(logged), timeout=60)
    counters = sink_counters(log)
    assert counters == {"sent": len(logged), "delivered": len(logged), "failed": 0, "dropped": 0, "undelivered": 0}
    assert sorted(map(json.dumps, messages)) == sorted(map(json.dumps, logged))  # none lost, none twice
    print(f"{produced_during_outage} records logged while the broker was down, all delivered after")


def test_agent_finishes_and_counts_its_losses_when_kafka_never_answers(
    tmp_path: Path, redis_server: EmbeddedRedis
) -> None:
    settings = quick_agent_settings(
        tmp_path,
        "agent",
        redis_server.url,
        total_steps=600,
        learning="false",
        eval_interval=0,
        kafka_bootstrap_servers=f"127.0.0.1:{free_port()}",
        kafka_buffer_messages=5,
        kafka_flush_timeout=1.0,
    )
    agent = spawn(tmp_path, "agent", settings)
    # The event is the agent's exit: a deadline, not a speed. How long the producer's close may
    # wait for a dead broker is test_sink_bounds_its_buffer_and_its_wait_when_kafka_is_gone's.
    exit_code = agent.wait(timeout=300)
    log = (tmp_path / "agent.log").read_text()
    assert exit_code == 0, log[-3_000:]
    logged = read_jsonl(tmp_path / "agent.jsonl")
    counters = sink_counters(log)
    assert counters["sent"] == counters["undelivered"] == 5
    assert counters["dropped"] == len(logged) - 5 > 0
    assert counters["delivered"] == counters["failed"] == 0
    assert "training-log message dropped: the buffer of 5 messages is full" in log


def test_without_kafka_settings_confluent_kafka_is_never_imported(tmp_path: Path, redis_server: EmbeddedRedis) -> None:
    # A confluent_kafka that cannot be imported, first on the path: the agent must not need it.
    blocker = tmp_path / "blocker" / "confluent_kafka"
    blocker.mkdir(parents=True)
    (blocker / "__init__.py").write_text("raise ImportError('confluent_kafka must not be imported without Kafka')\n")
    settings = quick_agent_settings(tmp_path, "agent", redis_server.url, total_steps=300, eval_interval=0)
    environment = agent_environment(**settings)
    environment["PYTHONPATH"] = os.pathsep.join(filter(None, [str(blocker.parent), environment.get("PYTHONPATH")]))
    completed = subprocess.run(
        [sys.executable, "-m", "borg_game"], cwd=tmp_path, env=environment, capture_output=True, text=True, timeout=120
    )
    assert completed.returncode == 0, completed.stderr[-3_000:]
    assert read_jsonl(tmp_path / "agent.jsonl")


def test_sink_delivers_and_counts_in_process(kafka_broker: KafkaBroker) -> None:
    topic = f"sink_{uuid.uuid4().hex[:8]}"
    sink = KafkaJsonProducer(
        kafka_broker.bootstrap_servers, topic, key="agent-0", kind="training-log", linger_ms=5, flush_timeout=10
    )
    for index in range(500):
        sink.emit({"type": "train", "update": index, "loss": math.nan if index == 7 else 0.5})
    sink.close()
    assert sink.stats() == {"sent": 500, "delivered": 500, "failed": 0, "dropped": 0, "undelivered": 0}
    messages = consume(kafka_broker.bootstrap_servers, topic, lambda got: len(got) >= 500, timeout=30)
    assert [message["update"] for message in messages] == list(range(500))  # in order, once each
    assert messages[7]["loss"] is None  # NaN is not JSON: it travels as null


def test_encode_message_writes_strict_json() -> None:
    encoded = encode_message({"loss": math.inf, "mean_q": -math.inf, "grad_norm": math.nan, "update": 3})
    assert json.loads(encoded) == {"loss": None, "mean_q": None, "grad_norm": None, "update": 3}
    assert b"NaN" not in encoded and b"Infinity" not in encoded


def test_sink_bounds_its_buffer_and_its_wait_when_kafka_is_gone() -> None:
    sink = KafkaJsonProducer(
        f"127.0.0.1:{free_port()}",
        "training_log",
        key="agent-0",
        kind="training-log",
        buffer_messages=3,
        flush_timeout=0.5,
    )
    for index in range(10):
        sink.emit({"type": "episode", "episode": index})
    # An unbounded wait would never end (nothing listens on the port): close must come back.
    closing = threading.Thread(target=sink.close, daemon=True)
    closing.start()
    closing.join(timeout=120)
    assert not closing.is_alive(), "close() kept waiting for a broker that is gone"
    assert sink.stats() == {"sent": 3, "delivered": 0, "failed": 0, "dropped": 7, "undelivered": 3}
    sink.emit({"type": "episode", "episode": 10})  # after close: counted, not an error
    assert sink.counters.dropped == 8
