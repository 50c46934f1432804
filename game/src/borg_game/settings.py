"""The one settings model of a game agent, read from `CONFIG_*` variables and `.env`.

Every field can be set as `CONFIG_<name>` in the environment or in a `.env` file in the
working directory, in any case (`CONFIG_seed` and `CONFIG_SEED` are the same key). The
environment wins over `.env`. An unknown `CONFIG_` key or a bad value stops the agent with a
message that names the key: a typo must never silently fall back to a default. The keys the
memory monitor reads too come from `borg_common.settings.SharedSettings`.

`CONFIG_AGENT<i>__<key>` sets `<key>` for the agent of index i alone (agents configured
individually in one hive, locally and under compose); it is checked like every key.
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

from borg_common.redaction import redact_values
from borg_common.settings import (
    ENV_PREFIX,
    MonitorSettings,
    SettingsError,
    SharedSettings,
    config_values,
    env_example_lines,
    validate_settings,
)
from dotenv import dotenv_values
from pydantic import Field, field_validator, model_validator
from pydantic_settings import NoDecode, SettingsConfigDict

__all__ = ["ENV_PRESETS", "Settings", "SettingsError", "env_example", "load_settings"]


# Defaults that differ per environment: the Settings defaults are tuned for Pong. CartPole keeps
# Stable-Baselines3 rl-zoo's DQN batch, network and start, with the update `make bench-learn`
# measured best (docs/benchmarks.md, "The verdict"): one gradient step per step at lr 5e-4 and
# a Polyak target (tau 0.005 every step). With rl-zoo's bursts (128 gradient steps every 256
# steps, target every 10, lr 2.3e-3) the agents of a hive rose and fell together; with this
# update a hive of 4 under ape_x learned it. Any key set in the environment or .env wins.
ENV_PRESETS: dict[str, dict[str, Any]] = {
    "CartPole-v1": {
        "learning_rate": 5e-4,
        "batch_size": 64,
        "learning_starts": 1_000,
        "train_frequency": 1,
        "gradient_steps": 1,
        "target_update_interval": 1,
        "tau": 0.005,
        "epsilon_decay_steps": 10_000,
        "epsilon_end": 0.02,
        "mlp_hidden_sizes": (256, 256),
        "clip_rewards": False,
        "eval_interval": 5_000,
        "eval_episodes": 10,
        "eval_epsilon": 0.0,
        "checkpoint_interval": 10_000,
    },
}


class Settings(SharedSettings):
    """Everything an agent can be tuned with. Defaults learn Pong; see README for why."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        case_sensitive=False,
        env_file=".env",
        extra="ignore",  # unknown CONFIG_ keys are caught by `check_unknown_keys`, with hints
        validate_default=True,
    )

    # --- identity (run_id: shared) ------------------------------------------------------
    agent_index: int | None = Field(
        None,
        ge=0,
        description="Index of this agent in the hive (seeds it); unset: a lease on the lowest free one in Redis.",
    )
    agent_id: str | None = Field(None, description="Name of this agent; unset: 'agent-<index>'.")
    agent_lease_seconds: int = Field(
        30, ge=3, description="Time to live of the Redis lease on a claimed agent index (renewed while running)."
    )
    stale_agent_days: float = Field(
        14.0,
        ge=0.0,
        description="Checkpoints and best models of other agents untouched this many days are deleted (0: never).",
    )

    # --- environment (env_id: shared) ----------------------------------------------------
    repeat_action_probability: float = Field(
        0.25, ge=0.0, le=1.0, description="Sticky actions of ALE v5 envs (0.25 is the v5 default)."
    )
    frame_stack: int = Field(4, ge=1, description="Frames stacked into one Atari observation.")
    noop_max: int = Field(30, ge=0, description="Random no-ops at the start of an Atari episode.")
    seed: int = Field(1, description="Base seed; env, numpy and torch use seed + agent_index.")

    # --- learning --------------------------------------------------------------------
    total_steps: int = Field(5_000_000, ge=1, description="Environment steps this agent plays, then stops.")
    learning: bool = Field(True, description="Train the network (off: play and share only).")
    learning_rate: float = Field(1e-4, gt=0.0, description="Adam learning rate (at step 0 when it decays).")
    learning_rate_end: float = Field(
        0.0, ge=0.0, description="Adam learning rate at the end of its linear decay (learning_rate_decay_steps)."
    )
    learning_rate_decay_steps: int = Field(
        0, ge=0, description="Agent steps of the learning rate's linear decay to learning_rate_end (0: constant)."
    )
    adam_eps: float = Field(1.5e-4, gt=0.0, description="Adam epsilon (Dopamine/Rainbow value).")
    gamma: float = Field(0.99, gt=0.0, le=1.0, description="Discount factor.")
    n_step: int = Field(
        1,
        ge=1,
        le=20,
        description="Steps each pushed transition spans (n-step returns; Ape-X and Rainbow: 3). 1: one step.",
    )
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
    exploration: Literal["linear", "ape_x"] = Field(
        "linear",
        description="linear: every agent decays epsilon_start -> epsilon_end; ape_x: agent i of hive_size keeps "
        "epsilon ape_x_epsilon ** (1 + ape_x_alpha * i / (hive_size - 1)).",
    )
    hive_size: int = Field(
        1, ge=1, description="Agents in the hive, N of ape_x (make run sets it; compose: = --scale game=N)."
    )
    ape_x_epsilon: float = Field(0.4, gt=0.0, lt=1.0, description="Base epsilon of the ape_x scheme (Ape-X: 0.4).")
    ape_x_alpha: float = Field(7.0, ge=0.0, description="Exponent spread of the ape_x scheme (Ape-X: 7).")
    # NoDecode: '64,64' is parsed by `_parse_sizes`, not as JSON.
    mlp_hidden_sizes: Annotated[tuple[int, ...], NoDecode] = Field(
        (256, 256), description="Hidden layers of the MLP used for vector observations, e.g. '64,64'."
    )
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="Torch device; auto uses CUDA when present.")
    torch_threads: int = Field(1, ge=0, description="CPU threads per agent for torch (0: torch's default).")

    # --- shared replay memory (redis_url, replay_key, push_counter_key, replay_capacity: shared)
    redis_read_url: str | None = Field(
        None, description="A read replica of redis_url for the mirror's pulls (same password); unset: the primary."
    )
    replay_sampling: Literal["mirror", "direct"] = Field(
        "mirror", description="mirror: sample a local copy pulled incrementally; direct: LINDEX from Redis."
    )
    push_batch_size: int = Field(64, ge=1, description="Transitions per pipelined LPUSH+LTRIM transaction.")
    push_queue_size: int = Field(
        10_000, ge=1, description="Transitions waiting to be pushed; beyond it they are counted as dropped."
    )
    mirror_sync_interval: int = Field(1, ge=1, description="Training rounds between two mirror pulls.")
    prioritized_replay: bool = Field(
        False, description="Draw from the mirror by this agent's TD errors (Schaul et al. 2016), not uniformly."
    )
    priority_alpha: float = Field(
        0.6, ge=0.0, le=1.0, description="Priority exponent: priority = (|TD error| + epsilon) ** alpha; 0 is uniform."
    )
    priority_beta_start: float = Field(
        0.4, ge=0.0, le=1.0, description="Importance-sampling exponent at step 0, annealed linearly to 1."
    )
    priority_beta_steps: int = Field(
        5_000_000, ge=1, description="Agent steps over which the importance-sampling exponent reaches 1."
    )
    priority_epsilon: float = Field(
        1e-6, gt=0.0, description="Added to |TD error| so that no transition's priority is zero."
    )
    compression_level: int = Field(3, ge=1, le=22, description="zstd level for observations.")
    max_transition_bytes: int = Field(
        4_000_000, ge=1024, description="Stored entries longer than this are skipped as corrupt, unparsed."
    )

    # --- evaluation --------------------------------------------------------------------
    eval_interval: int = Field(50_000, ge=0, description="Agent steps between evaluations (0: never).")
    eval_episodes: int = Field(5, ge=1, description="Episodes per evaluation.")
    eval_epsilon: float = Field(0.01, ge=0.0, le=1.0, description="Exploration rate while evaluating.")
    record_video: bool = Field(
        True, description="Keep videos of evaluation episodes as MP4 in model_store/videos and GIF in TensorBoard."
    )
    video_every_evals: int = Field(
        10, ge=0, description="Also keep the video of every Kth evaluation (0: the first and each new best only)."
    )
    video_max_frames: int = Field(
        10_000, ge=1, description="Frames recorded per video at most; the episode plays on unrecorded beyond."
    )

    # --- checkpoints -------------------------------------------------------------------
    model_store: Path = Field(Path("models"), description="Folder of checkpoints, shared by the hive.")
    checkpoint_interval: int = Field(50_000, ge=1, description="Agent steps between checkpoints.")
    checkpoint_keep: int = Field(3, ge=1, description="Checkpoints kept per agent.")
    resume: bool = Field(True, description="Start from the newest compatible checkpoint in model_store.")

    # --- telemetry (log_level: shared) ---------------------------------------------------
    tensorboard_dir: Path | None = Field(Path("runs"), description="TensorBoard event files go below; empty: off.")
    train_log_interval: int = Field(100, ge=1, description="Updates between two training-metric reports.")
    status_interval: float = Field(2.0, gt=0.0, description="Seconds between status reports to the hive's Redis.")
    training_log_file: Path | None = Field(
        None, description="Also append training-log records to this JSON-lines file."
    )

    # --- Kafka (the kafka_* keys: shared) -------------------------------------------------
    training_log_topic: str = Field("training_log", min_length=1, description="Kafka topic of training-log messages.")

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
        if self.prioritized_replay and self.replay_sampling != "mirror":
            raise ValueError(
                f"prioritized_replay needs replay_sampling=mirror (priorities live on the local mirror), "
                f"got replay_sampling={self.replay_sampling}"
            )
        if any(size <= 0 for size in self.mlp_hidden_sizes):
            raise ValueError(f"mlp_hidden_sizes must be positive integers, got {self.mlp_hidden_sizes}")
        return self

    def public_dump(self) -> dict[str, Any]:
        """All settings as JSON values with passwords masked: for logs, TensorBoard, checkpoints."""
        return redact_values(self.model_dump(mode="json"))

    def resolved_agent_id(self) -> str:
        """This agent's name: the configured one, else 'agent-<index>' (stable across restarts)."""
        return self.agent_id or f"agent-{self.agent_index}"


# `CONFIG_AGENT<i>__<key>`: a setting of the agent with index i only (individually configured agents).
_AGENT_OVERRIDE = re.compile(rf"^{ENV_PREFIX}AGENT(\d+)__(\w+)$", re.IGNORECASE)
# What an override may not set: the index it is selected by.
_NOT_OVERRIDABLE = frozenset({"agent_index"})


def check_unknown_keys(source: Mapping[str, str | None], origin: str) -> None:
    """Raise SettingsError naming every `CONFIG_` key of `source` that no service of the hive reads."""
    known = set(Settings.model_fields) | set(MonitorSettings.model_fields)
    overridable = sorted(set(Settings.model_fields) - _NOT_OVERRIDABLE)
    problems = []
    for key in source:
        name = key[len(ENV_PREFIX) :].lower()
        if not key.upper().startswith(ENV_PREFIX) or name in known:
            continue
        override = _AGENT_OVERRIDE.match(key)
        if override is not None:
            name, choices, prefix = override.group(2).lower(), overridable, key[: override.start(2)]
            if name in choices:
                continue
        else:
            choices, prefix = sorted(known), ENV_PREFIX
        hint = difflib.get_close_matches(name, choices, n=1)
        suggestion = f" (did you mean {prefix}{hint[0]}?)" if hint else ""
        problems.append(f"unknown setting {key} in {origin}{suggestion}")
    if problems:
        raise SettingsError("; ".join(problems))


def split_agent_overrides(values: Mapping[str, str | None]) -> tuple[dict[str, Any], dict[int, dict[str, Any]]]:
    """`CONFIG_` values (keyed by lower-case name) split into the hive's and each index's own."""
    shared: dict[str, Any] = {}
    per_agent: dict[int, dict[str, Any]] = {}
    for name, value in values.items():
        override = _AGENT_OVERRIDE.match(ENV_PREFIX + name)
        if override is None:
            shared[name] = value
        else:
            per_agent.setdefault(int(override.group(1)), {})[override.group(2).lower()] = value
    return shared, per_agent


def _validate_with_preset(values: Mapping[str, Any]) -> Settings:
    merged = dict(values)
    env_id = str(merged.get("env_id") or Settings.model_fields["env_id"].default)
    for name, value in ENV_PRESETS.get(env_id, {}).items():
        merged.setdefault(name, value)  # a preset only fills what the user did not set
    return validate_settings(Settings, merged)


def load_settings(
    environ: Mapping[str, str] | None = None, env_file: Path | None = Path(".env"), agent_index: int | None = None
) -> Settings:
    """Read settings from `environ` (default: the process environment) and `env_file`.

    `agent_index` (else CONFIG_agent_index) picks the `CONFIG_AGENT<i>__<key>` overrides that
    apply. Every index's overrides are validated, so a bad one fails at every agent's start.
    Raises SettingsError, naming the key, for unknown keys and invalid values.
    """
    environ = os.environ if environ is None else environ
    check_unknown_keys(environ, "the environment")
    file_values: dict[str, str | None] = {}
    if env_file is not None and env_file.is_file():
        file_values = dotenv_values(env_file)
        check_unknown_keys(file_values, str(env_file))
    # Values are passed explicitly so that `environ` may differ from os.environ (tests).
    merged: dict[str, Any] = config_values(file_values)
    merged.update(config_values(environ))
    shared, per_agent = split_agent_overrides(merged)
    if agent_index is not None:
        shared["agent_index"] = agent_index
    settings = _validate_with_preset(shared)
    for index, overrides in sorted(per_agent.items()):
        try:
            own = _validate_with_preset({**shared, **overrides})
        except SettingsError as error:
            raise SettingsError(f"in the CONFIG_AGENT{index}__ overrides: {error}") from None
        if index == settings.agent_index:
            settings = own
    return settings


def env_example() -> str:
    """The CONFIG_ block of `.env.example`: every setting, its doc and its default."""
    lines = [
        "# --- game agents: python -m borg_game.settings prints this block ---",
        "# Every key with its default, commented out: uncomment a line to change it.",
        "# One agent only: CONFIG_AGENT<i>__<key>=value sets <key> for the agent of index i",
        "# (e.g. CONFIG_AGENT1__learning_rate=0.0005); docs/full-stack.md, individually configured agents.",
        *env_example_lines(Settings, Settings.model_fields),
    ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(env_example(), end="")
