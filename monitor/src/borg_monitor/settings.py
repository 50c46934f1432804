"""The memory monitor's settings, read from `CONFIG_*` variables and `.env`.

The monitor shares one environment with the game agents (compose passes one env_file to
every service, `make run` one environment to every process). So it reads the agents' keys
it needs under their names and defaults (`SHARED_KEYS`, checked against the game's model
by a test), adds only `poll_interval` and `monitoring_topic` (the game knows these two as
`borg_game.settings.MONITOR_ONLY_KEYS`), and leaves every other `CONFIG_` key alone: the
agents reject unknown keys and typos with a hint, the monitor does not second-guess them.
A bad value of a key the monitor reads stops it with a message that names the key.
"""

from __future__ import annotations

import os
import textwrap
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from dotenv import dotenv_values
from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

ENV_PREFIX = "CONFIG_"

# Keys read by the game agents too, with the same meaning and default there.
SHARED_KEYS = (
    "run_id",
    "redis_url",
    "replay_key",
    "push_counter_key",
    "replay_capacity",
    "log_level",
    "kafka_bootstrap_servers",
    "kafka_buffer_messages",
    "kafka_message_timeout",
    "kafka_linger_ms",
    "kafka_compression",
    "kafka_flush_timeout",
)


class SettingsError(ValueError):
    """A `CONFIG_` value the monitor reads is invalid; the message says which and why."""


class MonitorSettings(BaseSettings):
    """Everything the monitor can be tuned with."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        case_sensitive=False,
        extra="ignore",  # the agents' keys: theirs to validate
        validate_default=True,
    )

    # --- the monitor's own keys --------------------------------------------------------
    poll_interval: float = Field(5.0, gt=0.0, le=3600.0, description="Seconds between two readings of Redis.")
    monitoring_topic: str = Field(
        "memory_monitoring", min_length=1, description="Kafka topic of the monitor's memory readings."
    )

    # --- shared with the game agents ----------------------------------------------------
    run_id: str = Field("borg-dqn", description="Name of this run, shared by all agents of the hive.")
    redis_url: str = Field("redis://localhost:6379/0", description="The hive's Redis.")
    replay_key: str = Field("transitions", description="Redis list holding the hive's transitions.")
    push_counter_key: str = Field(
        "transitions:pushed", description="Redis counter of all transitions ever pushed, bumped with each push."
    )
    replay_capacity: int = Field(100_000, ge=1, description="Transitions kept in Redis (LTRIM bound).")
    log_level: Literal["TRACE", "DEBUG", "INFO", "WARNING", "ERROR"] = Field("INFO", description="Console log level.")
    kafka_bootstrap_servers: str | None = Field(
        None, description="Kafka brokers 'host:port[,host:port]' for the JSON telemetry; unset: no Kafka."
    )
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

    @field_validator("kafka_bootstrap_servers", mode="before")
    @classmethod
    def _empty_is_none(cls, value: Any) -> Any:
        return None if value == "" else value


def _describe_validation_error(error: ValidationError) -> str:
    lines = []
    for item in error.errors():
        field = ".".join(str(part) for part in item["loc"]) or "settings"
        field_info = MonitorSettings.model_fields.get(field)
        expected = f" [{field_info.description}]" if field_info and field_info.description else ""
        given = item.get("input")
        shown = f"={given!r}" if not isinstance(given, dict) else ""
        lines.append(f"{ENV_PREFIX}{field}{shown}: {item['msg']}{expected}")
    return "; ".join(lines)


def _monitor_values(source: Mapping[str, str | None]) -> dict[str, str | None]:
    """The CONFIG_ entries of `source` the monitor reads, keyed by lower-case field name."""
    values = {}
    for key, value in source.items():
        if key.upper().startswith(ENV_PREFIX):
            name = key[len(ENV_PREFIX) :].lower()
            if name in MonitorSettings.model_fields:
                values[name] = value
    return values


def load_settings(environ: Mapping[str, str] | None = None, env_file: Path | None = Path(".env")) -> MonitorSettings:
    """Read settings from `environ` (default: the process environment) over `env_file`.

    Raises SettingsError, naming the key, for invalid values.
    """
    environ = os.environ if environ is None else environ
    merged = _monitor_values(dotenv_values(env_file)) if env_file is not None and env_file.is_file() else {}
    merged.update(_monitor_values(environ))
    try:
        # model_validate, not the constructor: the result depends on `environ` and `env_file` alone.
        return MonitorSettings.model_validate(merged)
    except ValidationError as error:
        raise SettingsError(_describe_validation_error(error)) from None


def _env_value(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return str(value).lower()
    return str(value)


def env_example() -> str:
    """The monitor's block of `.env.example`: its own keys with doc and default, then the shared ones."""
    lines = [
        "# --- memory monitor: python -m borg_monitor.settings prints this block ---",
        "# The monitor reads the same file; its own keys, with their defaults:",
    ]
    for name, info in MonitorSettings.model_fields.items():
        if name in SHARED_KEYS:
            continue
        lines.append(f"# {info.description}")
        lines.append(f"# {ENV_PREFIX}{name}={_env_value(info.get_default(call_default_factory=True))}")
    shared = ", ".join(f"{ENV_PREFIX}{name}" for name in SHARED_KEYS)
    wrapped = textwrap.wrap(f"It also reads these agents' keys (above), with the same meaning: {shared}.", width=98)
    lines.extend(f"# {line}" for line in wrapped)
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(env_example(), end="")
