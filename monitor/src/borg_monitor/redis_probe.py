"""One reading of the hive's Redis: memory, throughput, clients, the replay list and its counter."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import redis
from borg_common.redis_keys import status_pattern
from borg_common.timestamps import utc_timestamp
from loguru import logger
from redis.backoff import NoBackoff
from redis.retry import Retry

from borg_monitor.replication import ReplicaLag, replica_lags

# MEMORY USAGE of a list samples this many of its quicklist nodes and extrapolates:
# O(samples), cheap on a list of 1M transitions, and within a few percent since every node
# holds entries of about the same size.
MEMORY_USAGE_SAMPLES = 64


@dataclass(frozen=True)
class RedisReading:
    """What one poll of Redis saw.

    Attributes:
        monotonic: time.monotonic() of the reading, for rates.
        timestamp: the reading's wall-clock time, ISO 8601 UTC.
        transition_count: LLEN of the replay list.
        replay_bytes: MEMORY USAGE of the replay list; None while it does not exist.
        push_counter: the hive's push counter; 0 while it does not exist.
        used_memory: INFO memory used_memory.
        used_memory_rss: INFO memory used_memory_rss.
        ops_per_second: INFO stats instantaneous_ops_per_sec.
        connected_clients: INFO clients connected_clients.
        live_agents: agents of the run with an unexpired status key.
        connected_replicas: INFO replication connected_slaves.
        replicas: each replica's lag behind this primary (INFO replication).
    """

    monotonic: float
    timestamp: str
    transition_count: int
    replay_bytes: int | None
    push_counter: int
    used_memory: int
    used_memory_rss: int
    ops_per_second: float
    connected_clients: int
    live_agents: int
    connected_replicas: int = 0
    replicas: tuple[ReplicaLag, ...] = ()


def connect(url: str) -> redis.Redis:
    """A client that fails fast: the monitor's loop retries with its own backoff.

    It sends only the commands RedisProbe needs (and PING), which is all the stack's
    read-only ACL user `monitor` may run (compose.yaml, REDIS_MONITOR_ACL): so not the
    CLIENT SETINFO that redis-py sends on connecting by default.
    """
    return redis.Redis.from_url(
        url,
        socket_timeout=5,
        socket_connect_timeout=3,
        retry=Retry(NoBackoff(), 0),
        health_check_interval=30,
        driver_info=None,
    )


class RedisProbe:
    """Reads the statistics of one replay list in one round trip (plus a SCAN for agents)."""

    def __init__(self, client: redis.Redis, replay_key: str, push_counter_key: str, run_id: str) -> None:
        self._client = client
        self._replay_key = replay_key
        self._push_counter_key = push_counter_key
        # Agents' status keys expire 30 s after their last report: the keys of a run count its live agents.
        self._status_pattern = status_pattern(run_id)

    def read(self) -> RedisReading:
        """Read Redis now. Raises redis.RedisError when Redis cannot be reached.

        A missing key reads as empty; a key of the wrong type is logged and read as empty,
        so that a stray key never stops the monitor.
        """
        pipe = self._client.pipeline(transaction=False)
        pipe.info("memory")
        pipe.info("stats")
        pipe.info("clients")
        pipe.llen(self._replay_key)
        pipe.get(self._push_counter_key)
        pipe.memory_usage(self._replay_key, samples=MEMORY_USAGE_SAMPLES)
        pipe.info("replication")
        timestamp, monotonic = utc_timestamp(), time.monotonic()
        results = pipe.execute(raise_on_error=False)
        for result in results:
            if isinstance(result, redis.ConnectionError | redis.TimeoutError):
                raise result
        memory, stats, clients, length, counter, usage, replication = (self._checked(result) for result in results)
        live_agents = sum(1 for _ in self._client.scan_iter(match=self._status_pattern, count=1000))
        return RedisReading(
            monotonic=monotonic,
            timestamp=timestamp,
            transition_count=int(length or 0),
            replay_bytes=int(usage) if usage is not None else None,
            push_counter=self._counter_value(counter),
            used_memory=int((memory or {}).get("used_memory", 0)),
            used_memory_rss=int((memory or {}).get("used_memory_rss", 0)),
            ops_per_second=float((stats or {}).get("instantaneous_ops_per_sec", 0)),
            connected_clients=int((clients or {}).get("connected_clients", 0)),
            live_agents=live_agents,
            connected_replicas=int((replication or {}).get("connected_slaves", 0)),
            replicas=replica_lags(replication or {}),
        )

    def _checked(self, result: Any) -> Any:
        if isinstance(result, redis.ResponseError):
            logger.warning("Redis refused a monitor query: {} (read as empty)", result)
            return None
        return result

    def _counter_value(self, raw: Any) -> int:
        if raw is None:
            return 0
        try:
            return max(0, int(raw))
        except ValueError:
            logger.warning("push counter {} holds {!r}, not an integer (read as 0)", self._push_counter_key, raw)
            return 0
