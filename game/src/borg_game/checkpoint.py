"""Checkpoints: the format, atomic writes, own-then-newest resume, skipping what does not fit.

Each environment has its own subfolder of the model store (`env_model_store`), so switching
CONFIG_env_id never meets another game's checkpoints; one that still does not fit (another
network size) is skipped with one warning, never fatal.

A checkpoint is a dict of tensors and plain values (loadable with `weights_only=True`):
`{format, model, target, optimizer, step, episode, updates, best_eval, epsilon, settings,
compatibility}`. The best model (`best-<agent>.pt`) holds `{format, model, step, eval_score,
settings, compatibility}`. `Checkpointer` writes both for one agent and resumes it.
"""

from __future__ import annotations

import math
import os
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from loguru import logger

from borg_game.learner import DoubleDQNLearner
from borg_game.settings import Settings

CHECKPOINT_FORMAT = 1
_PREFIX = "checkpoint-"
_BEST_PREFIX = "best-"
_SUFFIX = ".pt"


def atomic_torch_save(payload: Mapping[str, Any], path: Path) -> None:
    """Write `payload` to `path` so that a reader sees the old file or the whole new one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor, temp_name = tempfile.mkstemp(prefix=".tmp-", suffix=_SUFFIX, dir=path.parent)
    try:
        with os.fdopen(descriptor, "wb") as handle:
            torch.save(dict(payload), handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp_name, path)  # atomic on POSIX within one filesystem
    except BaseException:
        Path(temp_name).unlink(missing_ok=True)
        raise


def checkpoint_path(store: Path, agent_id: str, step: int) -> Path:
    """Where the checkpoint of `agent_id` at `step` lives."""
    return store / f"{_PREFIX}{agent_id}-{step:012d}{_SUFFIX}"


def list_checkpoints(store: Path) -> list[Path]:
    """Every complete checkpoint in the store, newest first (temp files are never listed)."""
    if not store.is_dir():
        return []
    found = [path for path in store.glob(f"{_PREFIX}*{_SUFFIX}") if path.is_file()]
    return sorted(found, key=lambda path: path.stat().st_mtime_ns, reverse=True)


def prune_checkpoints(store: Path, agent_id: str, keep: int) -> None:
    """Delete all but the newest `keep` checkpoints of one agent."""
    own = [path for path in list_checkpoints(store) if path.name.startswith(f"{_PREFIX}{agent_id}-")]
    for path in own[keep:]:
        path.unlink(missing_ok=True)


def env_model_store(model_store: Path, env_id: str) -> Path:
    """The subfolder of `model_store` for environment `env_id`: switching envs never mixes models."""
    return model_store / env_id.replace("/", "-")


def incompatibilities(saved: Mapping[str, Any], expected: Mapping[str, Any]) -> list[str]:
    """Every difference between a checkpoint's compatibility record and this agent's."""
    return [
        f"{key}: checkpoint has {saved.get(key)!r}, this agent has {value!r}"
        for key, value in expected.items()
        if saved.get(key) != value
    ]


class CheckpointMismatchError(ValueError):
    """A model was written for another environment or network than the one it is loaded into."""


def check_compatible(saved: Mapping[str, Any], expected: Mapping[str, Any], path: Path) -> None:
    """Raise CheckpointMismatchError naming every difference between saved and expected."""
    differences = incompatibilities(saved, expected)
    if differences:
        raise CheckpointMismatchError(f"{path} does not fit ({'; '.join(differences)})")


def load_newest(store: Path, compatibility: Mapping[str, Any], agent_id: str | None = None) -> dict[str, Any] | None:
    """The newest readable, compatible checkpoint in the store (`agent_id`'s own first), or None.

    Unreadable files and checkpoints made for another setup are skipped; a warning says so
    once, with the first reason, so an agent never fails to start over an old checkpoint.
    """
    candidates = list_checkpoints(store)
    if agent_id is not None:  # own checkpoints first (stable sort keeps newest-first within each group)
        candidates.sort(key=lambda path: not path.name.startswith(f"{_PREFIX}{agent_id}-"))
    unfit: list[str] = []
    for path in candidates:
        try:
            payload: dict[str, Any] = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as error:  # a truncated or foreign file: fall back to an older one
            logger.warning("skipping unreadable checkpoint {}: {}", path, error)
            continue
        if payload.get("format") != CHECKPOINT_FORMAT:
            logger.warning("skipping checkpoint {} of unknown format {!r}", path, payload.get("format"))
            continue
        differences = incompatibilities(payload.get("compatibility", {}), compatibility)
        if differences:
            unfit.append(f"{path.name} ({'; '.join(differences)})")
            continue
        payload["path"] = str(path)
        _say_unfit(unfit, f"resuming from {path.name}")
        return payload
    _say_unfit(unfit, "starting fresh")
    return None


def _say_unfit(unfit: list[str], outcome: str) -> None:
    if unfit:
        logger.warning(
            "{} checkpoint(s) do not fit this agent and were skipped, e.g. {}; {}", len(unfit), unfit[0], outcome
        )


def prune_stale_agents(store: Path, agent_id: str, max_age_days: float, now: float | None = None) -> list[str]:
    """Delete the checkpoints and best model of every other agent whose newest file is older than
    `max_age_days` (0: keep all); returns the agent ids pruned.

    An agent that runs saves a checkpoint every CONFIG_checkpoint_interval steps, so only ids
    no agent has used for that long (an index no longer claimed, a hive scaled down, names
    of older versions) go.
    """
    if max_age_days <= 0 or not store.is_dir():
        return []
    newest: dict[str, float] = {}
    files: dict[str, list[Path]] = {}
    for path in store.glob(f"*{_SUFFIX}"):
        owner = _owner(path.name)
        if owner is None or owner == agent_id or not path.is_file():
            continue
        files.setdefault(owner, []).append(path)
        newest[owner] = max(newest.get(owner, 0.0), path.stat().st_mtime)
    cutoff = (time.time() if now is None else now) - max_age_days * 86_400
    stale = sorted(owner for owner, latest in newest.items() if latest < cutoff)
    for owner in stale:
        for path in files[owner]:
            path.unlink(missing_ok=True)
    if stale:
        logger.info("pruned checkpoints of {} agent(s) unused for {} days: {}", len(stale), max_age_days, stale)
    return stale


def _owner(name: str) -> str | None:
    # checkpoint-<agent>-<12-digit step>.pt or best-<agent>.pt; temp files (.tmp-*) belong to nobody.
    if name.startswith(_PREFIX) and len(name) > len(_PREFIX) + 13 + len(_SUFFIX):
        return name[len(_PREFIX) : -(13 + len(_SUFFIX))]
    if name.startswith(_BEST_PREFIX):
        return name[len(_BEST_PREFIX) : -len(_SUFFIX)]
    return None


@dataclass
class AgentState:
    """Counters that a checkpoint carries across restarts."""

    step: int = 0
    episode: int = 0
    updates: int = 0
    best_eval: float = -math.inf


def compatibility_of(settings: Settings, observation_shape: tuple[int, ...], num_actions: int) -> dict[str, Any]:
    """What a checkpoint must match to be loaded into this agent."""
    return {
        "env_id": settings.env_id,
        "observation_shape": list(observation_shape),
        "num_actions": num_actions,
        "mlp_hidden_sizes": list(settings.mlp_hidden_sizes),
    }


class Checkpointer:
    """Writes this agent's checkpoints and best model into the shared model store, and resumes."""

    def __init__(self, settings: Settings, agent_id: str, compatibility: dict[str, Any]) -> None:
        self.store = env_model_store(settings.model_store, settings.env_id)
        self.agent_id = agent_id
        self.keep = settings.checkpoint_keep
        self.compatibility = compatibility
        self.settings_dump = settings.public_dump()
        prune_stale_agents(self.store, agent_id, settings.stale_agent_days)

    def payload(self, learner: DoubleDQNLearner, state: AgentState, epsilon: float) -> dict[str, Any]:
        """Everything a resume needs: the networks, the optimizer, the counters, the settings."""
        return {
            "format": CHECKPOINT_FORMAT,
            "model": learner.q_network.state_dict(),
            "target": learner.target_network.state_dict(),
            "optimizer": learner.optimizer.state_dict(),
            "step": state.step,
            "episode": state.episode,
            "updates": state.updates,
            "best_eval": state.best_eval,
            "epsilon": epsilon,
            "settings": self.settings_dump,
            "compatibility": self.compatibility,
        }

    def save(self, learner: DoubleDQNLearner, state: AgentState, epsilon: float) -> Path:
        """Write a full checkpoint atomically and prune old ones."""
        path = checkpoint_path(self.store, self.agent_id, state.step)
        atomic_torch_save(self.payload(learner, state, epsilon), path)
        prune_checkpoints(self.store, self.agent_id, self.keep)
        return path

    def save_best(self, learner: DoubleDQNLearner, state: AgentState, score: float) -> None:
        """Keep the weights that scored best in evaluation."""
        atomic_torch_save(
            {
                "format": CHECKPOINT_FORMAT,
                "model": learner.q_network.state_dict(),
                "step": state.step,
                "eval_score": score,
                "settings": self.settings_dump,
                "compatibility": self.compatibility,
            },
            self.store / f"{_BEST_PREFIX}{self.agent_id}{_SUFFIX}",
        )

    def resume(self, learner: DoubleDQNLearner) -> AgentState | None:
        """Load this agent's newest compatible checkpoint, else the hive's, into `learner`; its counters, or None."""
        payload = load_newest(self.store, self.compatibility, self.agent_id)
        if payload is None:
            return None
        learner.q_network.load_state_dict(payload["model"])
        learner.target_network.load_state_dict(payload["target"])
        learner.optimizer.load_state_dict(payload["optimizer"])
        logger.info("resumed from {} at step {} (epsilon {:.3f})", payload["path"], payload["step"], payload["epsilon"])
        return AgentState(
            step=int(payload["step"]),
            episode=int(payload["episode"]),
            updates=int(payload["updates"]),
            best_eval=float(payload["best_eval"]),
        )
