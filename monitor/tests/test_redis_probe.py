from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
import redis
from borg_common.redis_keys import status_key
from borg_game.redis_server import EmbeddedRedis, free_port

from borg_monitor.redis_probe import RedisProbe, connect


@pytest.fixture
def client(redis_server: EmbeddedRedis) -> Iterator[redis.Redis]:
    client = connect(redis_server.url)
    client.flushall()
    yield client
    client.close()


def test_missing_keys_read_as_an_empty_memory(client: redis.Redis) -> None:
    reading = RedisProbe(client, "transitions", "transitions:pushed", "run").read()
    assert (reading.transition_count, reading.push_counter, reading.replay_bytes) == (0, 0, None)
    assert reading.used_memory > 0
    assert reading.connected_clients >= 1


def test_keys_of_the_wrong_type_read_as_empty(client: redis.Redis) -> None:
    client.set("transitions", "not a list")
    client.set("transitions:pushed", "not a number")
    reading = RedisProbe(client, "transitions", "transitions:pushed", "run").read()
    assert (reading.transition_count, reading.push_counter) == (0, 0)


def test_bytes_per_transition_is_close_to_the_entry_size(client: redis.Redis) -> None:
    entry_size = 1_500
    client.lpush("transitions", *[os.urandom(entry_size) for _ in range(2_000)])
    client.incrby("transitions:pushed", 2_000)
    reading = RedisProbe(client, "transitions", "transitions:pushed", "run").read()
    assert reading.transition_count == 2_000
    assert reading.push_counter == 2_000
    assert reading.replay_bytes is not None
    assert entry_size <= reading.replay_bytes / reading.transition_count <= entry_size * 1.2


def test_live_agents_are_the_runs_unexpired_status_keys(client: redis.Redis) -> None:
    client.set(status_key("run", "agent-0"), "{}", ex=30)
    client.set(status_key("run", "agent-1"), "{}", ex=30)
    client.set(status_key("other-run", "agent-0"), "{}", ex=30)
    assert RedisProbe(client, "transitions", "transitions:pushed", "run").read().live_agents == 2


def test_an_unreachable_redis_raises_a_redis_error_at_once() -> None:
    probe = RedisProbe(connect(f"redis://127.0.0.1:{free_port()}/0"), "transitions", "transitions:pushed", "run")
    with pytest.raises(redis.ConnectionError):
        probe.read()
