"""The real monitor process against a real redis-server and a real Kafka broker."""

from __future__ import annotations

import os
import re
import signal
import subprocess
from pathlib import Path

import jsonschema
import redis
from borg_common.redis_keys import DEFAULT_PUSH_COUNTER_KEY, DEFAULT_REPLAY_KEY, env_scoped_key
from borg_common.settings import SharedSettings
from borg_game.redis_server import EmbeddedRedis, free_port
from borg_harness.kafka_broker import KafkaBroker

from tests.conftest import TopicReader, schema_errors, spawn_monitor, wait_for

# The monitor watches the replay keys of its CONFIG_env_id; the tests leave it at the default.
DEFAULT_ENV_ID = str(SharedSettings.model_fields["env_id"].default)
REPLAY_KEY = env_scoped_key(DEFAULT_REPLAY_KEY, DEFAULT_ENV_ID)
PUSH_COUNTER_KEY = env_scoped_key(DEFAULT_PUSH_COUNTER_KEY, DEFAULT_ENV_ID)


def push(client: redis.Redis, count: int, size: int = 1_000) -> None:
    """Push as the agents do: LPUSH + LTRIM + INCRBY of the counter in one transaction."""
    pipe = client.pipeline(transaction=True)
    pipe.lpush(REPLAY_KEY, *[os.urandom(size) for _ in range(count)])
    pipe.ltrim(REPLAY_KEY, 0, 4_999)
    pipe.incrby(PUSH_COUNTER_KEY, count)
    pipe.execute()


def stop_monitor(monitor: subprocess.Popen[str], log: Path) -> str:
    monitor.send_signal(signal.SIGTERM)
    assert monitor.wait(timeout=30) == 0, log.read_text()
    return log.read_text()


def test_readings_arrive_on_kafka_schema_valid_and_complete(
    tmp_path: Path,
    redis_server: EmbeddedRedis,
    kafka_broker: KafkaBroker,
    memory_schema: jsonschema.Draft202012Validator,
) -> None:
    client = redis.Redis.from_url(redis_server.url)
    client.flushall()
    topic = "memory_monitoring_complete"
    reader = TopicReader(kafka_broker.bootstrap_servers, topic)
    monitor = spawn_monitor(
        tmp_path,
        redis_url=redis_server.url,
        kafka_bootstrap_servers=kafka_broker.bootstrap_servers,
        monitoring_topic=topic,
        poll_interval=0.3,
        replay_capacity=5_000,
        run_id="monitor-test",
        kafka_linger_ms=10,
    )
    try:
        client.set("borg:status:monitor-test:agent-0", "{}", ex=30)
        for _ in range(10):
            push(client, 200)
            reader.poll(0.3)
        reader.poll_until(
            lambda messages: any(message["transition_count"] == 2_000 for message in messages), 30, "all pushes seen"
        )
    finally:
        log = stop_monitor(monitor, tmp_path / "monitor.log")
    messages = reader.poll(2.0)
    reader.close()

    for message in messages:
        assert schema_errors(memory_schema, message) == []
    last = messages[-1]
    assert last["run_id"] == "monitor-test"
    assert last["agent_id"] == "monitor"
    assert last["capacity"] == 5_000
    assert last["transition_count"] == last["push_counter"] == 2_000
    assert last["live_agents"] == 1
    assert last["connected_clients"] >= 2
    assert 1_000 <= last["bytes_per_transition"] <= 1_200
    assert any((message["insert_rate"] or 0) > 0 for message in messages)
    # Every reading sent was delivered, and no reading is in Kafka twice.
    counters = re.search(r"sent (\d+), delivered (\d+), failed 0, dropped 0, undelivered at exit 0", log)
    assert counters is not None, log
    assert int(counters[1]) == int(counters[2]) == len(messages)
    assert len({message["timestamp"] for message in messages}) == len(messages)


def test_monitor_survives_redis_and_kafka_outages(
    tmp_path: Path, memory_schema: jsonschema.Draft202012Validator
) -> None:
    """Both servers down at start, Kafka back, Redis back, Redis gone and back: it resumes each time."""
    redis_port = free_port()
    broker = KafkaBroker(port=free_port())
    topic = "memory_monitoring_outages"
    log = tmp_path / "monitor.log"
    monitor = spawn_monitor(
        tmp_path,
        redis_url=f"redis://127.0.0.1:{redis_port}/0",
        kafka_bootstrap_servers=f"127.0.0.1:{broker.port}",
        monitoring_topic=topic,
        poll_interval=0.3,
        kafka_linger_ms=10,
    )
    redis_data = tmp_path / "redis"
    try:
        wait_for(lambda: "not readable" in log.read_text(), 120, "a warning that Redis is down")
        with EmbeddedRedis(port=redis_port, data_dir=redis_data) as server:
            push(redis.Redis.from_url(server.url), 100)
            wait_for(lambda: "replay 100/" in log.read_text(), 120, "readings once Redis is up")
        assert monitor.poll() is None, log.read_text()
        broker.start()  # Kafka arrives late: the readings buffered until now go out
        reader = TopicReader(broker.bootstrap_servers, topic)
        reader.poll_until(lambda messages: len(messages) > 0, 180, "buffered readings after Kafka came up")
        buffered = len(reader.messages)
        with EmbeddedRedis(port=redis_port, data_dir=redis_data) as server:
            push(redis.Redis.from_url(server.url), 50)
            reader.poll_until(
                lambda messages: any(message["transition_count"] == 50 for message in messages),
                180,
                "readings after Redis came back",
            )
        assert monitor.poll() is None, log.read_text()
        text = stop_monitor(monitor, log)
        messages = reader.poll(2.0)
        reader.close()
    finally:
        if monitor.poll() is None:
            monitor.kill()
        broker.close()
    assert buffered > 0
    assert any(message["transition_count"] == 100 for message in messages)  # read while Kafka was down
    for message in messages:
        assert schema_errors(memory_schema, message) == []
    counters = re.search(r"sent (\d+), delivered (\d+), failed 0, dropped 0, undelivered at exit 0", text)
    assert counters is not None, text
    assert int(counters[1]) == int(counters[2]) == len(messages)
    assert "Redis readable again" in text
