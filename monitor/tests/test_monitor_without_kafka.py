from __future__ import annotations

import signal
from pathlib import Path

import redis
from borg_common.redis_keys import DEFAULT_REPLAY_KEY, env_scoped_key
from borg_game.redis_server import EmbeddedRedis

from tests.conftest import spawn_monitor, wait_for

ENV_ID = "CartPole-v1"  # the monitor watches this environment's replay keys


def test_without_kafka_the_monitor_logs_its_readings_and_never_imports_kafka(
    tmp_path: Path, redis_server: EmbeddedRedis
) -> None:
    client = redis.Redis.from_url(redis_server.url)
    client.flushall()
    client.lpush(env_scoped_key(DEFAULT_REPLAY_KEY, ENV_ID), *[b"x" * 100 for _ in range(30)])
    # A confluent_kafka that cannot be imported, first on the path: the monitor must not need it.
    blocker = tmp_path / "blocker" / "confluent_kafka"
    blocker.mkdir(parents=True)
    (blocker / "__init__.py").write_text("raise ImportError('confluent_kafka must not be imported without Kafka')\n")
    monitor = spawn_monitor(
        tmp_path, pythonpath=blocker.parent, redis_url=redis_server.url, poll_interval=0.2, env_id=ENV_ID
    )
    log = tmp_path / "monitor.log"
    try:
        wait_for(lambda: log.read_text().count("replay 30/") >= 3, 30, "three readings in the log")
    finally:
        monitor.send_signal(signal.SIGTERM)
        assert monitor.wait(timeout=30) == 0, log.read_text()
    assert "readings go to this log only" in log.read_text()
