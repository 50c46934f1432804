"""The monitor's loop: read Redis every CONFIG_poll_interval seconds, publish each reading,
back off while Redis is down."""

from __future__ import annotations

import threading
import time
from typing import Any, Protocol

import redis
from borg_common.backoff import ExponentialBackoff
from borg_common.redaction import redact_url
from borg_common.throttle import ThrottledLog
from loguru import logger

from borg_monitor.messages import MONITOR_AGENT_ID, console_line, memory_message
from borg_monitor.redis_probe import RedisProbe, RedisReading
from borg_monitor.settings import MonitorSettings

# Longest wait between two attempts to reach a Redis that is down.
MAX_BACKOFF_SECONDS = 30.0
# While Redis stays down, one warning per this many seconds.
WARNING_INTERVAL_SECONDS = 60.0


class Publisher(Protocol):
    """Where readings go besides the log."""

    def emit(self, record: dict[str, Any]) -> None:
        """Take one message; must return at once."""
        ...

    def close(self) -> None:
        """Deliver what is buffered (bounded wait)."""
        ...


def reading_backoff(poll_interval: float) -> ExponentialBackoff:
    """Waits after failed readings in a row: doubling from the poll interval, capped at
    MAX_BACKOFF_SECONDS (or the poll interval, when that is longer)."""
    return ExponentialBackoff(initial=poll_interval, maximum=max(poll_interval, MAX_BACKOFF_SECONDS))


def run_monitor(
    settings: MonitorSettings, probe: RedisProbe, publisher: Publisher | None, stop: threading.Event
) -> int:
    """Poll until `stop` is set; returns how many readings were published."""
    previous: RedisReading | None = None
    backoff = reading_backoff(settings.poll_interval)
    unreadable = ThrottledLog(WARNING_INTERVAL_SECONDS)
    published = 0
    while not stop.is_set():
        started = time.monotonic()
        try:
            reading = probe.read()
        except redis.RedisError as error:
            delay = backoff.failed()
            unreadable.warning(
                "Redis at {} not readable ({}: {}); {} failed reading(s), retrying in {:.1f}s",
                redact_url(settings.redis_url),
                type(error).__name__,
                error,
                backoff.failures,
                delay,
            )
            stop.wait(delay)
            continue
        if backoff.failures:
            logger.info("Redis readable again after {} failed reading(s)", backoff.failures)
            backoff.succeeded()
            unreadable = ThrottledLog(WARNING_INTERVAL_SECONDS)  # the next outage is news at once
        message = memory_message(reading, previous, run_id=settings.run_id, capacity=settings.replay_capacity)
        previous = reading
        if publisher is not None:
            publisher.emit(message)
        published += 1
        logger.info(console_line(message))
        stop.wait(max(0.0, settings.poll_interval - (time.monotonic() - started)))
    return published


def build_publisher(settings: MonitorSettings) -> Publisher | None:
    """The Kafka publisher when CONFIG_kafka_bootstrap_servers is set, else None."""
    if settings.kafka_bootstrap_servers is None:
        logger.info("CONFIG_kafka_bootstrap_servers is not set: readings go to this log only")
        return None
    from borg_common.kafka_producer import producer_from_settings  # imports confluent_kafka: only with Kafka

    return producer_from_settings(
        settings,
        settings.kafka_bootstrap_servers,
        settings.monitoring_topic,
        key=MONITOR_AGENT_ID,
        kind="memory-monitoring",
        client_id="borg-monitor",
    )
