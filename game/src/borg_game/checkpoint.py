"""Checkpoints: atomic writes, newest-first resume, and a clear word on incompatibility.

A checkpoint is a dict of tensors and plain values (loadable with `weights_only=True`):
`{format, model, target, optimizer, step, episode, epsilon, settings, compatibility}`.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from loguru import logger

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
