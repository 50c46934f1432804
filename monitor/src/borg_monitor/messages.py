"""The `memory_monitoring` message of one Redis reading (schemas/memory_monitoring.schema.json)."""

from __future__ import annotations

import socket
from typing import Any

from borg_monitor.redis_probe import RedisReading
from borg_monitor.replication import replication_fields

MESSAGE_SCHEMA_VERSION = 1
MONITOR_AGENT_ID = "monitor"


def insert_rate(reading: RedisReading, previous: RedisReading | None) -> float | None:
    """Transitions pushed per second between two readings; None without a previous one or
    when the counter went back (Redis restarted empty, or the run was reset)."""
    if previous is None or reading.push_counter < previous.push_counter:
        return None
    elapsed = reading.monotonic - previous.monotonic
    if elapsed <= 0:
        return None
    return (reading.push_counter - previous.push_counter) / elapsed


def bytes_per_transition(reading: RedisReading) -> float | None:
    """Redis bytes per stored transition.

    From MEMORY USAGE of the replay list rather than from `used_memory` minus an empty
    instance's baseline: the list's own size leaves out what is not replay (the status
    keys, client buffers, allocator overhead of other data) and needs no baseline, which a
    monitor started beside a running hive could never measure.
    """
    if reading.replay_bytes is None or reading.transition_count == 0:
        return None
    return reading.replay_bytes / reading.transition_count


def memory_message(
    reading: RedisReading, previous: RedisReading | None, *, run_id: str, capacity: int, host: str | None = None
) -> dict[str, Any]:
    """The JSON-ready message of `reading`; `previous` gives the insert rate."""
    return {
        "timestamp": reading.timestamp,
        "run_id": run_id,
        "agent_id": MONITOR_AGENT_ID,
        "host": host or socket.gethostname(),
        "schema_version": MESSAGE_SCHEMA_VERSION,
        "type": "memory",
        "transition_count": reading.transition_count,
        "capacity": capacity,
        "used_memory_bytes": reading.used_memory,
        "used_memory_rss_bytes": reading.used_memory_rss,
        "replay_bytes": reading.replay_bytes,
        "bytes_per_transition": bytes_per_transition(reading),
        "push_counter": reading.push_counter,
        "insert_rate": insert_rate(reading, previous),
        "ops_per_second": reading.ops_per_second,
        "connected_clients": reading.connected_clients,
        "live_agents": reading.live_agents,
        **replication_fields(reading.replicas, reading.connected_replicas),
    }


def console_line(message: dict[str, Any]) -> str:
    """One human line of a message, for the monitor's log."""
    per_transition = message["bytes_per_transition"]
    rate = message["insert_rate"]
    return (
        f"replay {message['transition_count']:,}/{message['capacity']:,} transitions"
        f" | {'-' if per_transition is None else f'{per_transition:,.0f}'} B/transition"
        f" | used {message['used_memory_bytes'] / 2**20:,.1f} MiB"
        f" | pushed {message['push_counter']:,} ({'-' if rate is None else f'{rate:,.0f}'}/s)"
        f" | {message['ops_per_second']:,.0f} ops/s | {message['connected_clients']} clients"
        f" | {message['live_agents']} agents" + _replicas_part(message)
    )


def _replicas_part(message: dict[str, Any]) -> str:
    if not message["connected_replicas"]:
        return ""
    lag_bytes, lag_seconds = message["replica_max_lag_bytes"], message["replica_max_lag_seconds"]
    lag = "-" if lag_bytes is None else f"{lag_bytes:,} B / {lag_seconds} s"
    return f" | {message['connected_replicas']} replicas, lag {lag}"
