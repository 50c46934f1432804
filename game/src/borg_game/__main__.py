"""`python -m borg_game`: run one agent of the hive with settings from CONFIG_* and .env."""

from __future__ import annotations

import signal
import sys
import threading
import time
from types import FrameType

import redis
from loguru import logger

from borg_game.agent import AgentServices, default_hostname, run_agent, tensorboard_run_dir
from borg_game.codec import TransitionCodec
from borg_game.redis_access import RedisRefusedError, connect_redis, open_read_replica
from borg_game.replay import DirectSampler, MirrorSampler, ReplaySampler, ReplayWriter
from borg_game.settings import Settings, SettingsError, load_settings
from borg_game.telemetry import JsonLinesSink, Sink, StatusBoard, TensorBoardSink, TrainingLog

AGENT_INDEX_KEY = "borg:agent_index"


def build_writer(settings: Settings, client: redis.Redis) -> ReplayWriter:
    """The write side of the shared replay memory, as CONFIG_ sets it up."""
    return ReplayWriter(
        client,
        settings.replay_key,
        settings.push_counter_key,
        settings.replay_capacity,
        batch_size=settings.push_batch_size,
        queue_size=settings.push_queue_size,
    )


def build_sampler(settings: Settings, client: redis.Redis, codec: TransitionCodec) -> ReplaySampler:
    """The sample side chosen by CONFIG_replay_sampling; it reads through `client` (primary or replica)."""
    if settings.replay_sampling == "direct":
        return DirectSampler(client, settings.replay_key, settings.push_counter_key, codec)
    return MirrorSampler(client, settings.replay_key, settings.push_counter_key, settings.replay_capacity, codec)


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

    stop = threading.Event()

    def request_stop(signum: int, _frame: FrameType | None) -> None:
        # No logging here: the handler may interrupt a log call and loguru's lock is not reentrant.
        # The loop sees `stop` within a step and logs why it stopped.
        stop.set()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)

    try:
        client = connect_redis(settings.redis_url, stop)
        # Pulls go to the read replica when there is one; pushes and the status board stay on the primary.
        read_client = client if settings.redis_read_url is None else open_read_replica(settings.redis_read_url)
    except RedisRefusedError as error:
        print(f"borg-game: {error}", file=sys.stderr)
        return 2
    if settings.agent_index is None:
        # A unique index from the hive itself, so scaled replicas get distinct seeds and ids.
        settings = settings.model_copy(update={"agent_index": int(client.incr(AGENT_INDEX_KEY)) - 1})
    agent_id = settings.resolved_agent_id(default_hostname())
    logger.configure(extra={"agent": agent_id})
    logger.info("settings: {}", settings.public_dump())

    codec = TransitionCodec(settings.compression_level, settings.max_transition_bytes)
    writer = build_writer(settings, client)
    sinks: list[Sink] = []
    run_dir = tensorboard_run_dir(settings, agent_id)
    if run_dir is not None:
        sinks.append(TensorBoardSink(run_dir, settings.public_dump()))
    if settings.training_log_file is not None:
        sinks.append(JsonLinesSink(settings.training_log_file))
    if settings.kafka_bootstrap_servers is not None:
        from borg_game.kafka_sink import KafkaSink  # imports confluent_kafka: only when Kafka is configured

        sinks.append(
            KafkaSink(
                settings.kafka_bootstrap_servers,
                settings.training_log_topic,
                key=agent_id,
                buffer_messages=settings.kafka_buffer_messages,
                message_timeout=settings.kafka_message_timeout,
                linger_ms=settings.kafka_linger_ms,
                compression=settings.kafka_compression,
                flush_timeout=settings.kafka_flush_timeout,
                client_id=f"borg-game-{agent_id}",
            )
        )
    training_log = TrainingLog(settings.run_id, agent_id, sinks)
    services = AgentServices(
        writer=writer,
        sampler=build_sampler(settings, read_client, codec),
        training_log=training_log,
        status_board=StatusBoard(client, settings.run_id, agent_id),
    )
    started = time.monotonic()
    try:
        result = run_agent(settings, agent_id, services, stop)
    finally:
        # The final checkpoint is written: a second Ctrl-C or the launcher's SIGTERM must not
        # turn a clean exit into a kill while the last buffers are flushed and Python shuts down.
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        writer.close(timeout=5.0)
        training_log.close()
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
