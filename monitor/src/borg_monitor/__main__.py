"""`python -m borg_monitor`: poll the hive's Redis every CONFIG_poll_interval seconds and
publish each reading to Kafka topic `memory_monitoring` (and to the log, Kafka or not)."""

from __future__ import annotations

import re
import signal
import sys
import threading
import time
from types import FrameType
from typing import Any, Protocol

import redis
from loguru import logger

from borg_monitor.messages import MONITOR_AGENT_ID, console_line, memory_message
from borg_monitor.redis_probe import RedisProbe, RedisReading, connect
from borg_monitor.settings import MonitorSettings, SettingsError, load_settings

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


def redacted(url: str) -> str:
    """`url` without its password, for logs."""
    return re.sub(r"//[^@/]*@", "//***@", url)


def retry_delay(poll_interval: float, failures: int) -> float:
    """Seconds to wait after `failures` failed readings in a row: doubling from the poll
    interval, capped at MAX_BACKOFF_SECONDS (or the poll interval, when that is longer)."""
    cap = max(poll_interval, MAX_BACKOFF_SECONDS)
    return float(min(cap, poll_interval * 2 ** max(0, failures - 1)))


def run_monitor(
    settings: MonitorSettings, probe: RedisProbe, publisher: Publisher | None, stop: threading.Event
) -> int:
    """Poll until `stop` is set; returns how many readings were published."""
    previous: RedisReading | None = None
    failures = 0
    last_warning = -WARNING_INTERVAL_SECONDS
    published = 0
    while not stop.is_set():
        started = time.monotonic()
        try:
            reading = probe.read()
        except redis.RedisError as error:
            failures += 1
            delay = retry_delay(settings.poll_interval, failures)
            if time.monotonic() - last_warning >= WARNING_INTERVAL_SECONDS:
                last_warning = time.monotonic()
                logger.warning(
                    "Redis at {} not readable ({}: {}); {} failed reading(s), retrying in {:.1f}s",
                    redacted(settings.redis_url),
                    type(error).__name__,
                    error,
                    failures,
                    delay,
                )
            stop.wait(delay)
            continue
        if failures:
            logger.info("Redis readable again after {} failed reading(s)", failures)
            failures = 0
            last_warning = -WARNING_INTERVAL_SECONDS
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
    from borg_monitor.kafka_publisher import KafkaPublisher  # imports confluent_kafka: only with Kafka

    return KafkaPublisher(
        settings.kafka_bootstrap_servers,
        settings.monitoring_topic,
        key=MONITOR_AGENT_ID,
        buffer_messages=settings.kafka_buffer_messages,
        message_timeout=settings.kafka_message_timeout,
        linger_ms=settings.kafka_linger_ms,
        compression=settings.kafka_compression,
        flush_timeout=settings.kafka_flush_timeout,
    )


def main() -> int:
    """Entry point; returns the process exit code."""
    try:
        settings = load_settings()
    except SettingsError as error:
        print(f"borg-monitor: invalid settings: {error}", file=sys.stderr)
        return 2
    logger.remove()
    logger.add(sys.stderr, level=settings.log_level, format="{time:HH:mm:ss} {level: <7} monitor {message}")
    stop = threading.Event()

    def request_stop(signum: int, _frame: FrameType | None) -> None:
        # No logging here: the handler may interrupt a log call and loguru's lock is not reentrant.
        stop.set()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    logger.info("settings: {}", {**settings.model_dump(mode="json"), "redis_url": redacted(settings.redis_url)})

    client = connect(settings.redis_url)
    probe = RedisProbe(client, settings.replay_key, settings.push_counter_key, settings.run_id)
    publisher = build_publisher(settings)
    try:
        published = run_monitor(settings, probe, publisher, stop)
    finally:
        # Stopping already: a second Ctrl-C or the launcher's SIGTERM must not kill the flush.
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        if publisher is not None:
            publisher.close()
        client.close()
    logger.info("stopped after {} readings", published)
    return 0


if __name__ == "__main__":
    sys.exit(main())
