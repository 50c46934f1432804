"""The one settings model of a game agent, read from `CONFIG_*` variables and `.env`.

Every field can be set as `CONFIG_<name>` in the environment or in a `.env` file in the
working directory, in any case (`CONFIG_seed` and `CONFIG_SEED` are the same key). The
environment wins over `.env`. An unknown `CONFIG_` key or a bad value stops the agent with a
message that names the key: a typo must never silently fall back to a default.
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

from dotenv import dotenv_values
from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

ENV_PREFIX = "CONFIG_"

# The memory monitor reads the same `.env` (compose passes one env_file to every service and
# `make run` one environment to every process), so its own keys are known here, not typos.
MONITOR_ONLY_KEYS = frozenset({"poll_interval", "monitoring_topic"})


# Defaults that differ per environment: the Settings defaults are tuned for Pong. CartPole gets
# Stable-Baselines3 rl-zoo's DQN hyperparameters, which solve it in tens of thousands of steps
# on a CPU (docs/benchmarks.md). Any key set in the environment or .env wins over a preset.
ENV_PRESETS: dict[str, dict[str, Any]] = {
    "CartPole-v1": {
        "learning_rate": 2.3e-3,
        "batch_size": 64,
        "learning_starts": 1_000,
        "train_frequency": 256,
        "gradient_steps": 128,
        "target_update_interval": 10,
        "epsilon_decay_steps": 8_000,
        "epsilon_end": 0.04,
        "mlp_hidden_sizes": (256, 256),
        "clip_rewards": False,
        "eval_interval": 5_000,
        "eval_episodes": 10,
        "eval_epsilon": 0.0,
        "checkpoint_interval": 10_000,
    },
}


class SettingsError(ValueError):
    """A `CONFIG_` key is unknown or its value is invalid; the message says which and why."""


class Settings(BaseSettings):
    """Everything an agent can be tuned with. Defaults learn Pong; see README for why."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        case_sensitive=False,
        env_file=".env",
        extra="ignore",  # unknown CONFIG_ keys are caught by `check_unknown_keys`, with hints
        validate_default=True,
    )

    # --- identity --------------------------------------------------------------------
    run_id: str = Field("borg-dqn", description="Name of this run, shared by all agents of the hive.")
    agent_index: int | None = Field(
        None,
        ge=0,
        description="Index of this agent in the hive (seeds it); unset: a unique one from Redis.",
    )
    agent_id: str | None = Field(None, description="Name of this agent; unset: '<host>-<index>'.")

    # --- environment -----------------------------------------------------------------
    env_id: str = Field("ALE/Pong-v5", description="Gymnasium environment id (ALE/* gets the Atari stack).")
    repeat_action_probability: float = Field(
        0.25, ge=0.0, le=1.0, description="Sticky actions of ALE v5 envs (0.25 is the v5 default)."
    )
    frame_stack: int = Field(4, ge=1, description="Frames stacked into one Atari observation.")
    noop_max: int = Field(30, ge=0, description="Random no-ops at the start of an Atari episode.")
    seed: int = Field(1, description="Base seed; env, numpy and torch use seed + agent_index.")

    # --- learning --------------------------------------------------------------------
    total_steps: int = Field(5_000_000, ge=1, description="Environment steps this agent plays, then stops.")
    learning: bool = Field(True, description="Train the network (off: play and share only).")
    learning_rate: float = Field(1e-4, gt=0.0, description="Adam learning rate.")
    adam_eps: float = Field(1.5e-4, gt=0.0, description="Adam epsilon (Dopamine/Rainbow value).")
    gamma: float = Field(0.99, gt=0.0, le=1.0, description="Discount factor.")
    batch_size: int = Field(32, ge=1, description="Transitions per minibatch.")
    learning_starts: int = Field(10_000, ge=0, description="Agent steps played before the first update.")
    train_frequency: int = Field(4, ge=1, description="Agent steps between two training rounds.")
    gradient_steps: int = Field(1, ge=1, description="Gradient updates per training round.")
    target_update_interval: int = Field(1_000, ge=1, description="Agent steps between target-network updates.")
    tau: float = Field(1.0, gt=0.0, le=1.0, description="Target update rate: 1.0 copies, <1 is a soft (Polyak) update.")
    max_grad_norm: float = Field(10.0, gt=0.0, description="Gradients are clipped to this global norm.")
    clip_rewards: bool = Field(True, description="Learn from sign(reward) (logged returns stay raw).")
    epsilon_start: float = Field(1.0, ge=0.0, le=1.0, description="Exploration rate at step 0.")
    epsilon_end: float = Field(0.01, ge=0.0, le=1.0, description="Exploration rate after the decay.")
    epsilon_decay_steps: int = Field(100_000, ge=1, description="Agent steps of the linear epsilon decay.")
    # NoDecode: '64,64' is parsed by `_parse_sizes`, not as JSON.
    mlp_hidden_sizes: Annotated[tuple[int, ...], NoDecode] = Field(
        (256, 256), description="Hidden layers of the MLP used for vector observations, e.g. '64,64'."
    )
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="Torch device; auto uses CUDA when present.")
    torch_threads: int = Field(1, ge=0, description="CPU threads per agent for torch (0: torch's default).")

    # --- shared replay memory --------------------------------------------------------
    redis_url: str = Field("redis://localhost:6379/0", description="The hive's Redis.")
    redis_read_url: str | None = Field(
        None, description="A read replica of redis_url for the mirror's pulls (same password); unset: the primary."
    )
    replay_key: str = Field("transitions", description="Redis list holding the hive's transitions.")
    push_counter_key: str = Field(
        "transitions:pushed", description="Redis counter of all transitions ever pushed, bumped with each push."
    )
    replay_capacity: int = Field(100_000, ge=1, description="Transitions kept in Redis (LTRIM bound).")
    replay_sampling: Literal["mirror", "direct"] = Field(
        "mirror", description="mirror: sample a local copy pulled incrementally; direct: LINDEX from Redis."
    )
    push_batch_size: int = Field(64, ge=1, description="Transitions per pipelined LPUSH+LTRIM transaction.")
    push_queue_size: int = Field(
        10_000, ge=1, description="Transitions waiting to be pushed; beyond it they are counted as dropped."
    )
    mirror_sync_interval: int = Field(1, ge=1, description="Training rounds between two mirror pulls.")
    compression_level: int = Field(3, ge=1, le=22, description="zstd level for observations.")
    max_transition_bytes: int = Field(
        4_000_000, ge=1024, description="Stored entries longer than this are skipped as corrupt, unparsed."
    )

    # --- evaluation --------------------------------------------------------------------
    eval_interval: int = Field(50_000, ge=0, description="Agent steps between evaluations (0: never).")
    eval_episodes: int = Field(5, ge=1, description="Episodes per evaluation.")
    eval_epsilon: float = Field(0.01, ge=0.0, le=1.0, description="Exploration rate while evaluating.")

    # --- checkpoints -------------------------------------------------------------------
    model_store: Path = Field(Path("models"), description="Folder of checkpoints, shared by the hive.")
    checkpoint_interval: int = Field(50_000, ge=1, description="Agent steps between checkpoints.")
    checkpoint_keep: int = Field(3, ge=1, description="Checkpoints kept per agent.")
    resume: bool = Field(True, description="Start from the newest compatible checkpoint in model_store.")

    # --- telemetry ---------------------------------------------------------------------
    log_level: Literal["TRACE", "DEBUG", "INFO", "WARNING", "ERROR"] = Field("INFO", description="Console log level.")
    tensorboard_dir: Path | None = Field(Path("runs"), description="TensorBoard event files go below; empty: off.")
    train_log_interval: int = Field(100, ge=1, description="Updates between two training-metric reports.")
    status_interval: float = Field(2.0, gt=0.0, description="Seconds between status reports to the hive's Redis.")
    training_log_file: Path | None = Field(
        None, description="Also append training-log records to this JSON-lines file."
    )

    # --- Kafka (training log here; the memory monitor reads the same kafka_* keys) -------
    kafka_bootstrap_servers: str | None = Field(
        None, description="Kafka brokers 'host:port[,host:port]' for the JSON telemetry; unset: no Kafka."
    )
    training_log_topic: str = Field("training_log", min_length=1, description="Kafka topic of training-log messages.")
    kafka_buffer_messages: int = Field(
        100_000,
        ge=1,
        le=10_000_000,
        description="Messages held while Kafka is unreachable; beyond it new ones are dropped and counted.",
    )
    kafka_message_timeout: float = Field(
        0.0,
        ge=0.0,
        le=2_000_000.0,
        description="Seconds a message may wait for Kafka, then it counts as failed (0: no limit but the buffer).",
    )
    kafka_linger_ms: int = Field(
        200, ge=0, le=900_000, description="Milliseconds a message waits to be batched with the next ones."
    )
    kafka_compression: Literal["none", "gzip", "snappy", "lz4", "zstd"] = Field(
        "zstd", description="Compression of Kafka message batches."
    )
    kafka_flush_timeout: float = Field(
        5.0, ge=0.0, description="Seconds spent at shutdown delivering buffered messages; the rest is counted."
    )

    @field_validator("mlp_hidden_sizes", mode="before")
    @classmethod
    def _parse_sizes(cls, value: Any) -> Any:
        if isinstance(value, str):
            text = value.strip().strip("[]()")
            return tuple(int(part) for part in text.split(",") if part.strip())
        return value

    @field_validator(
        "tensorboard_dir",
        "training_log_file",
        "agent_index",
        "agent_id",
        "kafka_bootstrap_servers",
        "redis_read_url",
        mode="before",
    )
    @classmethod
    def _empty_is_none(cls, value: Any) -> Any:
        return None if value == "" else value

    @field_validator("redis_read_url")
    @classmethod
    def _check_read_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("expected a redis://[:PASSWORD@]HOST:PORT/DB URL of a read replica, or empty")
        return value

    @model_validator(mode="after")
    def _check_consistency(self) -> Settings:
        if self.epsilon_end > self.epsilon_start:
            raise ValueError(f"epsilon_end ({self.epsilon_end}) must not exceed epsilon_start ({self.epsilon_start})")
        if any(size <= 0 for size in self.mlp_hidden_sizes):
            raise ValueError(f"mlp_hidden_sizes must be positive integers, got {self.mlp_hidden_sizes}")
        return self

    def public_dump(self) -> dict[str, Any]:
        """All settings as JSON values with passwords masked: for logs, TensorBoard, checkpoints."""
        dump = self.model_dump(mode="json")
        for name, value in dump.items():
            if isinstance(value, str) and "://" in value:
                dump[name] = re.sub(r"(://[^:/@]*:)[^@]*@", r"\1***@", value)
        return dump

    def resolved_agent_id(self, hostname: str) -> str:
        """This agent's name: the configured one, else '<host>-<index>'."""
        return self.agent_id or f"{hostname}-{self.agent_index}"


def _config_keys(source: Mapping[str, str | None]) -> list[str]:
    return [key for key in source if key.upper().startswith(ENV_PREFIX)]


def check_unknown_keys(source: Mapping[str, str | None], origin: str) -> None:
    """Raise SettingsError naming every `CONFIG_` key of `source` that no setting reads."""
    known = set(Settings.model_fields) | MONITOR_ONLY_KEYS
    problems = []
    for key in _config_keys(source):
        name = key[len(ENV_PREFIX) :].lower()
        if name in known:
            continue
        hint = difflib.get_close_matches(name, sorted(known), n=1)
        suggestion = f" (did you mean CONFIG_{hint[0]}?)" if hint else ""
        problems.append(f"unknown setting {key} in {origin}{suggestion}")
    if problems:
        raise SettingsError("; ".join(problems))


def _describe_validation_error(error: ValidationError) -> str:
    lines = []
    for item in error.errors():
        field = ".".join(str(part) for part in item["loc"]) or "settings"
        field_info = Settings.model_fields.get(field)
        expected = f" [{field_info.description}]" if field_info and field_info.description else ""
        given = item.get("input")
        shown = f"={given!r}" if not isinstance(given, dict) else ""
        lines.append(f"{ENV_PREFIX}{field}{shown}: {item['msg']}{expected}")
    return "; ".join(lines)


def load_settings(environ: Mapping[str, str] | None = None, env_file: Path | None = Path(".env")) -> Settings:
    """Read settings from `environ` (default: the process environment) and `env_file`.

    Raises SettingsError, naming the key, for unknown keys and invalid values.
    """
    environ = os.environ if environ is None else environ
    check_unknown_keys(environ, "the environment")
    file_values: dict[str, str | None] = {}
    if env_file is not None and env_file.is_file():
        file_values = dotenv_values(env_file)
        check_unknown_keys(file_values, str(env_file))
    # Values are passed explicitly so that `environ` may differ from os.environ (tests).
    merged: dict[str, Any] = {
        key[len(ENV_PREFIX) :].lower(): value
        for key, value in file_values.items()
        if key.upper().startswith(ENV_PREFIX)
    }
    merged.update(
        {key[len(ENV_PREFIX) :].lower(): value for key, value in environ.items() if key.upper().startswith(ENV_PREFIX)}
    )
    env_id = str(merged.get("env_id") or Settings.model_fields["env_id"].default)
    for name, value in ENV_PRESETS.get(env_id, {}).items():
        merged.setdefault(name, value)  # a preset only fills what the user did not set
    try:
        # Explicit values outrank every other source, so the result depends on `environ` alone.
        return Settings(_env_file=None, **merged)  # type: ignore[call-arg]  # pydantic-settings init kwarg
    except ValidationError as error:
        raise SettingsError(_describe_validation_error(error)) from None


def _env_value(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, tuple | list):
        return ",".join(str(item) for item in value)
    return str(value)


def env_example() -> str:
    """The CONFIG_ block of `.env.example`: every setting, its doc and its default."""
    lines = [
        "# --- game agents: python -m borg_game.settings prints this block ---",
        "# Every key with its default, commented out: uncomment a line to change it.",
    ]
    for name, info in Settings.model_fields.items():
        lines.append(f"# {info.description}")
        lines.append(f"# {ENV_PREFIX}{name}={_env_value(info.get_default(call_default_factory=True))}")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(env_example(), end="")
