"""`python -m borg_monitor`: poll the hive's Redis every CONFIG_poll_interval seconds and
publish each reading to Kafka topic `memory_monitoring` (and to the log, Kafka or not)."""

from __future__ import annotations

import sys

from borg_common.redaction import redact_values
from borg_common.shutdown import ignore_stop_signals, stop_on_signals
from loguru import logger

from borg_monitor.polling import build_publisher, run_monitor
from borg_monitor.redis_probe import RedisProbe, connect
from borg_monitor.settings import SettingsError, load_settings


def main() -> int:
    """Entry point; returns the process exit code."""
    try:
        settings = load_settings()
    except SettingsError as error:
        print(f"borg-monitor: invalid settings: {error}", file=sys.stderr)
        return 2
    logger.remove()
    logger.add(sys.stderr, level=settings.log_level, format="{time:HH:mm:ss} {level: <7} monitor {message}")
    stop = stop_on_signals()
    logger.info("settings: {}", redact_values(settings.model_dump(mode="json")))

    client = connect(settings.redis_url)
    probe = RedisProbe(client, settings.env_replay_key, settings.env_push_counter_key, settings.run_id)
    publisher = build_publisher(settings)
    try:
        published = run_monitor(settings, probe, publisher, stop)
    finally:
        ignore_stop_signals()  # stopping already: nothing may kill the flush
        if publisher is not None:
            publisher.close()
        client.close()
    logger.info("stopped after {} readings", published)
    return 0


if __name__ == "__main__":
    sys.exit(main())
