"""Integration test: a real KRaft Kafka broker keeps its data across a restart."""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from confluent_kafka import Consumer as KafkaConsumer
from confluent_kafka import KafkaError, Message, Producer

from borg_harness.kafka_broker import DEFAULT_KAFKA_VERSION, KafkaBroker, _is_complete

TOPIC = "borg-harness-test"
PAYLOADS = [b"transition-0", b"transition-1", b"transition-2"]


@pytest.fixture
def broker() -> Iterator[KafkaBroker]:
    with KafkaBroker() as running:
        yield running


def _consume_all(bootstrap: str, topic: str, expected: int, timeout: float = 30.0) -> list[bytes]:
    """Read ``expected`` messages from the start of ``topic`` with a fresh group id."""
    consumer = KafkaConsumer(
        {
            "bootstrap.servers": bootstrap,
            # A new group has no committed offsets, so it starts from the beginning.
            "group.id": f"test-{uuid.uuid4()}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    values: list[bytes] = []
    try:
        consumer.subscribe([topic])
        deadline = time.monotonic() + timeout
        while len(values) < expected and time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is None:
                continue
            error = msg.error()
            if error is not None:
                # Partition EOF is informational; anything else is a real failure.
                assert error.code() == KafkaError._PARTITION_EOF, error
                continue
            value = msg.value()
            assert isinstance(value, bytes)
            values.append(value)
    finally:
        consumer.close()
    return values


def _pid_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_produce_consume_survives_restart(broker: KafkaBroker) -> None:
    host, _, port = broker.bootstrap_servers.partition(":")
    assert host == "127.0.0.1" and int(port) == broker.port
    broker.create_topics([TOPIC])
    broker.create_topics([TOPIC])  # creating an existing topic is not an error

    delivery_errors: list[KafkaError] = []

    def on_delivery(err: KafkaError | None, _msg: Message) -> None:
        if err is not None:
            delivery_errors.append(err)

    producer = Producer({"bootstrap.servers": broker.bootstrap_servers, "acks": "all"})
    for payload in PAYLOADS:
        producer.produce(TOPIC, value=payload, on_delivery=on_delivery)
    assert producer.flush(30) == 0
    assert delivery_errors == []

    assert _consume_all(broker.bootstrap_servers, TOPIC, len(PAYLOADS)) == PAYLOADS

    old_pid = broker.pid
    assert old_pid is not None
    started = time.monotonic()
    broker.restart()
    restart_s = time.monotonic() - started
    assert broker.pid is not None and broker.pid != old_pid
    assert not _pid_exists(old_pid)
    assert broker.bootstrap_servers == f"127.0.0.1:{port}"  # same address after restart
    print(f"broker restart took {restart_s:.1f}s")

    assert _consume_all(broker.bootstrap_servers, TOPIC, len(PAYLOADS)) == PAYLOADS

    pid = broker.pid
    broker.stop()
    assert not broker.is_running()
    assert broker.pid is None
    assert not _pid_exists(pid)
    broker.stop()  # idempotent


def test_close_removes_owned_data_dir() -> None:
    broker = KafkaBroker()
    data_dir = broker.data_dir
    broker.start()
    assert (broker.log_dir / "meta.properties").is_file()
    broker.close()
    assert not data_dir.exists()


def test_a_jar_cache_from_before_the_tools_jar_counts_as_incomplete(tmp_path: Path) -> None:
    # The Docker stand-in of the Kafka image runs kafka-tools (TopicCommand): a cache made by
    # the older recipe, without it, is fetched again rather than used.
    version = DEFAULT_KAFKA_VERSION
    older = [f"kafka_2.13-{version}.jar", "log4j-slf4j-impl-2.25.4.jar"]
    (tmp_path / ".complete").write_text("\n".join(older) + "\n")
    assert not _is_complete(tmp_path, version)
    (tmp_path / ".complete").write_text("\n".join([*older, f"kafka-tools-{version}.jar"]) + "\n")
    assert _is_complete(tmp_path, version)
