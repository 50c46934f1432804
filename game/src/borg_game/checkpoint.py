"""Checkpoints: the format, atomic writes, newest-first resume, and a clear word on incompatibility.

A checkpoint is a dict of tensors and plain values (loadable with `weights_only=True`):
`{format, model, target, optimizer, step, episode, updates, best_eval, epsilon, settings,
compatibility}`. The best model (`best-<agent>.pt`) holds `{format, model, step, eval_score,
settings, compatibility}`. `Checkpointer` writes both for one agent and resumes it.
"""

from __future__ import annotations

import math
import os
import tempfile
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
_SUFFIX = ".pt"


class CheckpointMismatchError(ValueError):
    """A checkpoint was written for another environment or network than this agent's."""


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


def check_compatible(saved: Mapping[str, Any], expected: Mapping[str, Any], path: Path) -> None:
    """Raise CheckpointMismatchError naming every difference between saved and expected."""
    differences = [
        f"{key}: checkpoint has {saved.get(key)!r}, this agent has {value!r}"
        for key, value in expected.items()
        if saved.get(key) != value
    ]
    if differences:
        raise CheckpointMismatchError(
            f"checkpoint {path} does not fit this agent ({'; '.join(differences)}); "
            "point CONFIG_model_store elsewhere or set CONFIG_resume=false"
        )


def load_newest(store: Path, compatibility: Mapping[str, Any]) -> dict[str, Any] | None:
    """The newest readable checkpoint in the store, or None; unreadable files are skipped.

    Raises CheckpointMismatchError when the newest readable one was made for another setup.
    """
    for path in list_checkpoints(store):
        try:
            payload: dict[str, Any] = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as error:  # a truncated or foreign file: fall back to an older one
            logger.warning("skipping unreadable checkpoint {}: {}", path, error)
            continue
        if payload.get("format") != CHECKPOINT_FORMAT:
            logger.warning("skipping checkpoint {} of unknown format {!r}", path, payload.get("format"))
            continue
        check_compatible(payload.get("compatibility", {}), compatibility, path)
        payload["path"] = str(path)
        return payload
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
        self.store = settings.model_store
        self.agent_id = agent_id
        self.keep = settings.checkpoint_keep
        self.compatibility = compatibility
        self.settings_dump = settings.public_dump()

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
            self.store / f"best-{self.agent_id}.pt",
        )

    def resume(self, learner: DoubleDQNLearner) -> AgentState | None:
        """Load the newest compatible checkpoint of the hive into `learner`; its counters, or None."""
        payload = load_newest(self.store, self.compatibility)
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
