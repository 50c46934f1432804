"""Replica lag in the monitor's readings: INFO replication of a real primary with a real replica."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable, Iterator
from dataclasses import replace

import jsonschema
import pytest
import redis
from borg_game.redis_server import EmbeddedRedis

from borg_monitor.messages import console_line, memory_message
from borg_monitor.redis_probe import RedisProbe, RedisReading, connect
from borg_monitor.replication import ReplicaLag, replica_lags, replication_fields
from tests.conftest import schema_errors

PASSWORD = "monitor-replica-test"


def wait_until(condition: Callable[[], bool], what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out after {timeout:.0f}s waiting for {what}"
        time.sleep(0.05)


@pytest.fixture
def primary_and_replica() -> Iterator[tuple[EmbeddedRedis, EmbeddedRedis]]:
    with EmbeddedRedis(password=PASSWORD) as primary:
        replica = EmbeddedRedis(password=PASSWORD, replica_of=primary.port).start()
        try:
            yield primary, replica
        finally:
            os.kill(replica.pid, signal.SIGCONT)  # in case a test left it paused
            replica.stop()


def probe_of(server: EmbeddedRedis) -> RedisProbe:
    return RedisProbe(connect(server.url), "transitions", "transitions:pushed", "run")


def test_lags_are_the_primarys_offset_minus_each_replicas() -> None:
    info = {
        "role": "master",
        "connected_slaves": 2,
        "slave0": {"ip": "10.0.0.2", "port": 6379, "state": "online", "offset": 900, "lag": 0},
        "slave1": {"ip": "10.0.0.3", "port": 6379, "state": "wait_bgsave", "offset": 0, "lag": 3},
        "master_repl_offset": 1000,
    }
    assert replica_lags(info) == (
        ReplicaLag("10.0.0.2:6379", "online", 100, 0),
        ReplicaLag("10.0.0.3:6379", "wait_bgsave", 1000, 3),
    )
    assert replication_fields(replica_lags(info), 2) == {
        "connected_replicas": 2,
        "replicas_online": 1,
        "replica_max_lag_bytes": 1000,
        "replica_max_lag_seconds": 3,
    }


def test_a_server_without_replicas_reports_none() -> None:
    assert replica_lags({"role": "master", "connected_slaves": 0, "master_repl_offset": 5}) == ()
    assert replica_lags({"role": "slave", "master_link_status": "up"}) == ()
    assert replication_fields((), 0) == {
        "connected_replicas": 0,
        "replicas_online": 0,
        "replica_max_lag_bytes": None,
        "replica_max_lag_seconds": None,
    }


def test_messages_with_replicas_follow_the_schema(memory_schema: jsonschema.Draft202012Validator) -> None:
    reading = RedisReading(
        monotonic=1.0,
        timestamp="2026-11-22T10:00:00.123Z",
        transition_count=10,
        replay_bytes=5_000,
        push_counter=10,
        used_memory=2_000_000,
        used_memory_rss=4_000_000,
        ops_per_second=10.0,
        connected_clients=3,
        live_agents=1,
        connected_replicas=1,
        replicas=(ReplicaLag("127.0.0.1:7000", "online", 2_048, 1),),
    )
    message = memory_message(reading, None, run_id="run", capacity=100)
    assert schema_errors(memory_schema, message) == []
    assert console_line(message).endswith("| 1 replicas, lag 2,048 B / 1 s")
    assert schema_errors(memory_schema, {**message, "replica_max_lag_bytes": -1}) != []
    without = memory_message(replace(reading, connected_replicas=0, replicas=()), None, run_id="run", capacity=100)
    assert schema_errors(memory_schema, without) == []
    assert "replicas" not in console_line(without)


def test_the_probe_sees_a_paused_replica_fall_behind_and_catch_up(
    primary_and_replica: tuple[EmbeddedRedis, EmbeddedRedis],
) -> None:
    primary, replica = primary_and_replica
    probe = probe_of(primary)
    wait_until(lambda: [lag.state for lag in probe.read().replicas] == ["online"], "the replica to come online")
    reading = probe.read()
    assert reading.connected_replicas == 1
    assert reading.replicas[0].address.endswith(f":{replica.port}")

    os.kill(replica.pid, signal.SIGSTOP)  # it stops acknowledging: the primary's offset runs ahead
    writer = redis.Redis.from_url(primary.url)
    writer.lpush("transitions", *[b"x" * 1_000 for _ in range(200)])
    wait_until(lambda: probe.read().replicas[0].lag_bytes >= 200_000, "the lag to show 200 KB not acknowledged")
    wait_until(lambda: probe.read().replicas[0].lag_seconds >= 2, "the lag in seconds to grow")

    os.kill(replica.pid, signal.SIGCONT)
    wait_until(lambda: probe.read().replicas[0].lag_bytes == 0, "the replica to catch up")
    writer.close()


def test_a_replica_reports_no_replicas_of_its_own(primary_and_replica: tuple[EmbeddedRedis, EmbeddedRedis]) -> None:
    _, replica = primary_and_replica
    reading = probe_of(replica).read()
    assert (reading.connected_replicas, reading.replicas) == (0, ())
