"""The settings every service of the hive reads from one environment, and how they are read.

Compose passes one env_file to every service and `make run` one environment to every
process, so the game agents and the memory monitor share `CONFIG_*` keys. The keys both
read are fields of `SharedSettings`, defined once here; the monitor's own keys are fields of
`MonitorSettings`, here too, because the agents must know them to tell them from typos.
Each service's model subclasses `SharedSettings`; the helpers below read `CONFIG_` values,
describe validation errors naming the key, and write the `.env.example` blocks.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from borg_common.redis_keys import DEFAULT_PUSH_COUNTER_KEY, DEFAULT_REPLAY_KEY, env_scoped_key

ENV_PREFIX = "CONFIG_"

ModelT = TypeVar("ModelT", bound=BaseModel)


class SettingsError(ValueError):
    """A `CONFIG_` key is unknown or its value is invalid; the message says which and why."""


class SharedSettings(BaseSettings):
    """The keys every service of the hive reads, with one meaning and one default."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        case_sensitive=False,
        extra="ignore",
        validate_default=True,
    )

    run_id: str = Field("borg-dqn", description="Name of this run, shared by all agents of the hive.")
    env_id: str = Field("ALE/Pong-v5", description="Gymnasium environment id (ALE/* gets the Atari stack).")
    redis_url: str = Field("redis://localhost:6379/0", description="The hive's Redis.")
    replay_key: str = Field(
        DEFAULT_REPLAY_KEY, description="Redis list of the hive's transitions; the env id is appended (':<env_id>')."
    )
    push_counter_key: str = Field(
        DEFAULT_PUSH_COUNTER_KEY,
        description="Redis counter of all transitions ever pushed, bumped with each push; ':<env_id>' appended.",
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

    @property
    def env_replay_key(self) -> str:
        """The replay list of this environment: `<replay_key>:<env_id>`."""
        return env_scoped_key(self.replay_key, self.env_id)

    @property
    def env_push_counter_key(self) -> str:
        """The push counter of this environment: `<push_counter_key>:<env_id>`."""
        return env_scoped_key(self.push_counter_key, self.env_id)

    @field_validator("kafka_bootstrap_servers", mode="before")
    @classmethod
    def _empty_servers_is_none(cls, value: Any) -> Any:
        return None if value == "" else value


class MonitorSettings(SharedSettings):
    """Everything the memory monitor can be tuned with: the shared keys plus its own two."""

    poll_interval: float = Field(5.0, gt=0.0, le=3600.0, description="Seconds between two readings of Redis.")
    monitoring_topic: str = Field(
        "memory_monitoring", min_length=1, description="Kafka topic of the monitor's memory readings."
    )


def monitor_only_keys() -> list[str]:
    """The monitor's own keys (not read by the agents), in declaration order."""
    return [name for name in MonitorSettings.model_fields if name not in SharedSettings.model_fields]


def config_values(source: Mapping[str, str | None], fields: Iterable[str] | None = None) -> dict[str, str | None]:
    """The `CONFIG_` entries of `source` keyed by lower-case field name (only `fields`, if given)."""
    wanted = None if fields is None else set(fields)
    values = {}
    for key, value in source.items():
        if key.upper().startswith(ENV_PREFIX):
            name = key[len(ENV_PREFIX) :].lower()
            if wanted is None or name in wanted:
                values[name] = value
    return values


def describe_validation_error(error: ValidationError, model: type[BaseModel]) -> str:
    """One line per invalid value: the key, the value given, what is wrong, what the key means."""
    lines = []
    for item in error.errors():
        field = ".".join(str(part) for part in item["loc"]) or "settings"
        field_info = model.model_fields.get(field)
        expected = f" [{field_info.description}]" if field_info and field_info.description else ""
        given = item.get("input")
        shown = f"={given!r}" if not isinstance(given, dict) else ""
        lines.append(f"{ENV_PREFIX}{field}{shown}: {item['msg']}{expected}")
    return "; ".join(lines)


def validate_settings(model: type[ModelT], values: Mapping[str, Any]) -> ModelT:
    """`model` of exactly `values` (no other source is read); SettingsError naming each bad key."""
    try:
        return model.model_validate(dict(values))
    except ValidationError as error:
        raise SettingsError(describe_validation_error(error, model)) from None


def env_value(value: Any) -> str:
    """A default as `.env` writes it: empty for None, lower-case booleans, comma-separated lists."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, tuple | list):
        return ",".join(str(item) for item in value)
    return str(value)


def env_example_lines(model: type[BaseModel], names: Iterable[str]) -> list[str]:
    """`.env.example` lines of `names`: each key's doc, then the key commented out at its default."""
    lines = []
    for name in names:
        info = model.model_fields[name]
        lines.append(f"# {info.description}")
        lines.append(f"# {ENV_PREFIX}{name}={env_value(info.get_default(call_default_factory=True))}")
    return lines
