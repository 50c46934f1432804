"""`python -m borg_game`: run one agent of the hive with settings from CONFIG_* and .env."""

from __future__ import annotations

import socket
import sys
import time

from borg_common.shutdown import ignore_stop_signals, stop_on_signals
from loguru import logger

from borg_game.agent import AgentServices, run_agent
from borg_game.identity import IndexLease
from borg_game.redis_access import RedisRefusedError, connect_redis, open_read_replica
from borg_game.replay_memory import build_replay_memory
from borg_game.settings import SettingsError, load_settings
from borg_game.status import StatusBoard
from borg_game.telemetry import build_training_log


def main() -> int:
    """Entry point; returns the process exit code."""
    try:
        settings = load_settings()
    except SettingsError as error:
        print(f"borg-game: invalid settings: {error}", file=sys.stderr)
        return 2
    logger.remove()
    logger.add(sys.stderr, level=settings.log_level, format="{time:HH:mm:ss} {level: <7} {extra[agent]} {message}")
    logger.configure(extra={"agent": "-"})

    stop = stop_on_signals()

    try:
        client = connect_redis(settings.redis_url, stop)
        # Pulls go to the read replica when there is one; pushes and the status board stay on the primary.
        read_client = client if settings.redis_read_url is None else open_read_replica(settings.redis_read_url)
    except RedisRefusedError as error:
        print(f"borg-game: {error}", file=sys.stderr)
        return 2
    lease: IndexLease | None = None
    if settings.agent_index is None:
        # A stable index from the hive itself: scaled replicas differ, a restarted container keeps its own.
        lease = IndexLease(client, settings.run_id, socket.gethostname(), settings.agent_lease_seconds)
        settings = load_settings(agent_index=lease.index)  # with this index's CONFIG_AGENT<i>__ overrides
    agent_id = settings.resolved_agent_id()
    logger.configure(extra={"agent": agent_id})
    logger.info("settings: {}", settings.public_dump())

    memory = build_replay_memory(settings, client, read_client)
    writer = memory.writer
    training_log = build_training_log(settings, agent_id)
    services = AgentServices(
        writer=writer,
        sampler=memory.sampler,
        training_log=training_log,
        callbacks=[StatusBoard(client, settings.run_id, agent_id)],
        priorities=memory.priorities,
    )
    started = time.monotonic()
    try:
        result = run_agent(settings, agent_id, services, stop)
    finally:
        ignore_stop_signals()  # the final checkpoint is written: nothing may kill the flush
        writer.close(timeout=5.0)
        training_log.close()
        if lease is not None:
            lease.release()
    logger.info(
        "done: {} steps, {} episodes, {} updates in {:.0f}s; pushed {}, dropped {}",
        result.steps,
        result.episodes,
        result.updates,
        time.monotonic() - started,
        writer.pushed,
        writer.dropped,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
