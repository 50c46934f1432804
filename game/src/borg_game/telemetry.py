"""The agent's training log: one typed record per episode, per N updates and per evaluation.

Each record type is a dataclass whose fields are those of its kind in
schemas/training_log.schema.json (a test holds them equal). `TrainingLog` stamps a record
with the fields every message has and hands it to every configured sink: TensorBoard in
local runs, a JSON-lines file, Kafka (`borg_common.kafka_producer`). Nothing here may block
the environment loop.
"""

from __future__ import annotations

import json
import socket
from dataclasses import asdict, dataclass, fields
from datetime import datetime
from pathlib import Path
from typing import Any, ClassVar, Protocol

from borg_common.throttle import ThrottledLog
from borg_common.timestamps import utc_timestamp
from loguru import logger

from borg_game.settings import Settings

MESSAGE_SCHEMA_VERSION = 1


@dataclass(frozen=True, slots=True)
class EpisodeRecord:
    """One finished training episode; returns are the real game score (never clipped)."""

    kind: ClassVar[str] = "episode"
    env_id: str
    episode: int
    episode_return: float
    episode_length: int
    epsilon: float
    agent_step: int
    hive_step: int
    steps_per_second: float


@dataclass(frozen=True, slots=True)
class TrainRecord:
    """Training metrics of the last update, and the replay memory's health counters."""

    kind: ClassVar[str] = "train"
    update: int
    agent_step: int
    loss: float
    mean_q: float
    grad_norm: float
    learning_rate: float
    n_step: int
    epsilon: float
    replay_sample_age_seconds: float
    replay_size: int
    dropped_transitions: int
    push_errors: int
    corrupt_entries: int


@dataclass(frozen=True, slots=True)
class EvalRecord:
    """One evaluation, with the epsilon and sticky-action setting it was played with."""

    kind: ClassVar[str] = "eval"
    env_id: str
    agent_step: int
    eval_return_mean: float
    eval_return_std: float
    eval_episodes: int
    eval_epsilon: float
    repeat_action_probability: float
    epsilon: float


@dataclass(frozen=True, slots=True)
class Exploration:
    """How an agent explores: stamped on every record so runs of different schemes compare.

    Attributes:
        exploration: the scheme, CONFIG_exploration ('linear' or 'ape_x').
        agent_index: the agent's index in the hive (its place in the ape_x scheme).
        hive_size: the N of the ape_x scheme (CONFIG_hive_size).
    """

    exploration: str = "linear"
    agent_index: int = 0
    hive_size: int = 1

    @classmethod
    def of(cls, settings: Settings) -> Exploration:
        """The exploration settings of an agent."""
        return cls(settings.exploration, settings.agent_index or 0, settings.hive_size)


Record = EpisodeRecord | TrainRecord | EvalRecord

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
        "epsilon": "charts/epsilon",
        "replay_sample_age_seconds": "charts/replay_sample_age_seconds",
        "replay_size": "charts/replay_size",
        "dropped_transitions": "replay/dropped_transitions",
        "push_errors": "replay/push_errors",
        "corrupt_entries": "replay/corrupt_entries",
    },
    "eval": {"eval_return_mean": "eval/mean_return", "eval_return_std": "eval/std_return"},
}


class Sink(Protocol):
    """Somewhere training-log messages go."""

    def emit(self, record: dict[str, Any]) -> None:
        """Take one message; must return at once."""
        ...

    def close(self) -> None:
        """Deliver what is buffered (bounded wait) and release resources."""
        ...


class TensorBoardSink:
    """Writes the numeric fields of each message as TensorBoard scalars at the agent step."""

    def __init__(self, log_dir: Path, settings_dump: dict[str, Any]) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self._writer = SummaryWriter(log_dir=str(log_dir))
        rows = "\n".join(f"|{key}|{value}|" for key, value in settings_dump.items())
        self._writer.add_text("settings", f"|setting|value|\n|-|-|\n{rows}")

    def emit(self, record: dict[str, Any]) -> None:
        """Add the message's scalars."""
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
            raise RuntimeError(f"the TensorBoard writer is closed; cannot add {tag} at step {step}")
        file_writer.add_summary(Summary(value=[Summary.Value(tag=tag, image=image)]), step)

    def close(self) -> None:
        """Flush event files."""
        self._writer.close()


class JsonLinesSink:
    """Appends each message as one JSON line to a file (local runs, tests, offline analysis)."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._file = path.open("a", encoding="utf-8", buffering=1)  # line-buffered: a crash loses no line

    def emit(self, record: dict[str, Any]) -> None:
        """Write the message."""
        self._file.write(json.dumps(record) + "\n")

    def close(self) -> None:
        """Close the file."""
        self._file.close()


class TrainingLog:
    """Stamps records with the common fields and hands them to every sink."""

    def __init__(self, run_id: str, agent_id: str, sinks: list[Sink], exploration: Exploration | None = None) -> None:
        self._common = {
            "run_id": run_id,
            "agent_id": agent_id,
            "host": socket.gethostname(),
            "schema_version": MESSAGE_SCHEMA_VERSION,
            **asdict(exploration or Exploration()),
        }
        self._sinks = sinks
        self._sink_failures = ThrottledLog(60.0)

    def write(self, record: Record) -> dict[str, Any]:
        """Emit one record as a message to every sink; a failing sink never stops training."""
        message = {"timestamp": utc_timestamp(), **self._common, "type": record.kind}
        for field in fields(record):
            message[field.name] = getattr(record, field.name)
        for sink in self._sinks:
            try:
                sink.emit(message)
            except Exception as error:
                self._sink_failures.warning("telemetry sink {} failed: {}", type(sink).__name__, error)
        return message

    def add_animation(self, tag: str, gif: bytes, height: int, width: int, step: int) -> None:
        """Hand an animated GIF (an evaluation video) to the sinks that show images: TensorBoard's."""
        for sink in self._sinks:
            if isinstance(sink, TensorBoardSink):
                sink.add_animation(tag, gif, height, width, step)

    def close(self) -> None:
        """Close every sink."""
        for sink in self._sinks:
            try:
                sink.close()
            except Exception as error:
                logger.warning("closing telemetry sink {} failed: {}", type(sink).__name__, error)


def tensorboard_run_dir(settings: Settings, agent_id: str) -> Path | None:
    """runs/{env}__{run_id}__{agent}__{seed}__{time}, CleanRL's naming."""
    if settings.tensorboard_dir is None:
        return None
    env_name = settings.env_id.replace("/", "-")
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    return settings.tensorboard_dir / f"{env_name}__{settings.run_id}__{agent_id}__{settings.seed}__{stamp}"


def build_training_log(settings: Settings, agent_id: str) -> TrainingLog:
    """The training log with the sinks CONFIG_ asks for: TensorBoard, a JSON-lines file, Kafka."""
    sinks: list[Sink] = []
    run_dir = tensorboard_run_dir(settings, agent_id)
    if run_dir is not None:
        sinks.append(TensorBoardSink(run_dir, settings.public_dump()))
    if settings.training_log_file is not None:
        sinks.append(JsonLinesSink(settings.training_log_file))
    if settings.kafka_bootstrap_servers is not None:
        sinks.append(kafka_sink(settings.kafka_bootstrap_servers, settings, agent_id))
    return TrainingLog(settings.run_id, agent_id, sinks, Exploration.of(settings))


def kafka_sink(bootstrap_servers: str, settings: Settings, agent_id: str) -> Sink:
    """The training log's Kafka producer to `bootstrap_servers`, as CONFIG_kafka_* sets it up."""
    from borg_common.kafka_producer import producer_from_settings  # imports confluent_kafka: only with Kafka

    return producer_from_settings(
        settings,
        bootstrap_servers,
        settings.training_log_topic,
        key=agent_id,
        kind="training-log",
        client_id=f"borg-game-{agent_id}",
    )
