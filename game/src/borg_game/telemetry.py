"""The agent's training log: one record per episode, per N updates and per evaluation.

Records are flat dicts in the shape of the `training_log` messages (see schemas/). They go
to every configured sink: TensorBoard always in local runs, more sinks (Kafka) when set.
Nothing here may block the environment loop.
"""

from __future__ import annotations

import json
import socket
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import redis
from loguru import logger

MESSAGE_SCHEMA_VERSION = 1

# TensorBoard tags for the numeric fields of each record type, grouped as CleanRL does.
_TENSORBOARD_TAGS: dict[str, dict[str, str]] = {
    "episode": {
        "episode_return": "charts/episodic_return",
        "episode_length": "charts/episodic_length",
        "epsilon": "charts/epsilon",
        "steps_per_second": "charts/SPS",
    },
    "train": {
        "loss": "losses/td_loss",
        "mean_q": "losses/q_values",
        "grad_norm": "losses/grad_norm",
        "learning_rate": "charts/learning_rate",
        "replay_sample_age_seconds": "charts/replay_sample_age_seconds",
        "replay_size": "charts/replay_size",
    },
    "eval": {"eval_return_mean": "eval/mean_return", "eval_return_std": "eval/std_return"},
}


def utc_timestamp() -> str:
    """Now as ISO 8601 UTC with milliseconds, e.g. 2026-11-22T10:00:00.123Z."""
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class Sink(Protocol):
    """Somewhere training-log records go."""

    def emit(self, record: dict[str, Any]) -> None:
        """Take one record; must return at once."""
        ...

    def close(self) -> None:
        """Deliver what is buffered (bounded wait) and release resources."""
        ...


class TensorBoardSink:
    """Writes the numeric fields of each record as TensorBoard scalars at the agent step."""

    def __init__(self, log_dir: Path, settings_dump: dict[str, Any]) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self._writer = SummaryWriter(log_dir=str(log_dir))
        rows = "\n".join(f"|{key}|{value}|" for key, value in settings_dump.items())
        self._writer.add_text("settings", f"|setting|value|\n|-|-|\n{rows}")
        self.log_dir = log_dir

    def emit(self, record: dict[str, Any]) -> None:
        """Add the record's scalars."""
        step = int(record.get("agent_step", 0))
        for field, tag in _TENSORBOARD_TAGS.get(str(record.get("type")), {}).items():
            value = record.get(field)
            if isinstance(value, int | float):
                self._writer.add_scalar(tag, value, step)

    def add_animation(self, tag: str, gif: bytes, height: int, width: int, step: int) -> None:
        """Add an animated GIF, which TensorBoard plays in its Images tab (its "video")."""
        # What SummaryWriter.add_video writes, without its moviepy 1.x dependency.
        from tensorboard.compat.proto.summary_pb2 import Summary

        image = Summary.Image(height=height, width=width, colorspace=3, encoded_image_string=gif)
        file_writer = self._writer.file_writer
        if file_writer is None:
            raise RuntimeError(f"TensorBoard writer of {self.log_dir} is closed; cannot add {tag}")
        file_writer.add_summary(Summary(value=[Summary.Value(tag=tag, image=image)]), step)

    def close(self) -> None:
        """Flush event files."""
        self._writer.close()


class TrainingLog:
    """Stamps records with the common fields and hands them to every sink."""

    def __init__(self, run_id: str, agent_id: str, sinks: list[Sink]) -> None:
        self._common = {
            "run_id": run_id,
            "agent_id": agent_id,
            "host": socket.gethostname(),
            "schema_version": MESSAGE_SCHEMA_VERSION,
        }
        self._sinks = sinks

    def record(self, record_type: str, **fields: Any) -> dict[str, Any]:
        """Build one record and emit it to every sink; a failing sink never stops training."""
        record = {"timestamp": utc_timestamp(), **self._common, "type": record_type, **fields}
        for sink in self._sinks:
            try:
                sink.emit(record)
            except Exception as error:
                logger.warning("telemetry sink {} failed: {}", type(sink).__name__, error)
        return record

    def close(self) -> None:
        """Close every sink."""
        for sink in self._sinks:
            try:
                sink.close()
            except Exception as error:
                logger.warning("closing telemetry sink {} failed: {}", type(sink).__name__, error)


STATUS_KEY_PREFIX = "borg:status:"


class StatusBoard:
    """Publishes this agent's latest progress to the hive's Redis for `make run`'s console view."""

    def __init__(self, client: redis.Redis, run_id: str, agent_id: str, ttl_seconds: int = 30) -> None:
        self._client = client
        self._key = f"{STATUS_KEY_PREFIX}{run_id}:{agent_id}"
        self._ttl = ttl_seconds
        self._last_error = 0.0

    def publish(self, status: dict[str, Any]) -> None:
        """Overwrite the status, expiring it so a dead agent leaves the view."""
        try:
            self._client.set(self._key, json.dumps(status), ex=self._ttl)
        except redis.RedisError as error:
            if time.monotonic() - self._last_error > 30.0:
                self._last_error = time.monotonic()
                logger.warning("could not publish agent status to Redis: {}", error)


def read_statuses(client: redis.Redis, run_id: str) -> list[dict[str, Any]]:
    """All live agents' statuses of a run, ordered by agent id."""
    statuses = []
    for key in client.scan_iter(match=f"{STATUS_KEY_PREFIX}{run_id}:*", count=1000):
        raw = client.get(key)
        if raw:
            statuses.append(json.loads(raw))
    return sorted(statuses, key=lambda status: str(status.get("agent_id")))


class JsonLinesSink:
    """Appends each record as one JSON line to a file (local runs, tests, offline analysis)."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._file = path.open("a", encoding="utf-8", buffering=1)  # line-buffered: a crash loses no line

    def emit(self, record: dict[str, Any]) -> None:
        """Write the record."""
        self._file.write(json.dumps(record) + "\n")

    def close(self) -> None:
        """Close the file."""
        self._file.close()
