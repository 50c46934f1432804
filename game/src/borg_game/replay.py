"""The hive's shared replay memory: what its two sides look like to the agent.

Layout in Redis (every agent of the hive agrees on it), one pair of keys per environment
(`<replay_key>:<env_id>`, `<push_counter_key>:<env_id>`: `SharedSettings.env_replay_key`):
- the replay list: a list of protobuf `Transition` bytes, newest at the head (LPUSH), trimmed
  to `capacity` with LTRIM;
- the push counter: how many transitions were ever pushed, incremented in the same
  MULTI/EXEC as the LPUSH. So the entry at list index i has sequence number `counter - i`,
  which lets a reader fetch exactly the entries it has not seen yet with one LRANGE.

Write side: `replay_writer.ReplayWriter` pushes from a background thread. Sample side (a
`ReplaySampler`): `mirror.MirrorSampler` (default) keeps a local columnar copy
(`mirror_store.MirrorStore`), pulled incrementally, and draws from it with a pluggable
`IndexSampler`; `direct_sampler.DirectSampler` samples straight from Redis (kept to compare).
`replay_memory.build_replay_memory` makes both sides from settings.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple, Protocol

import numpy as np
import numpy.typing as npt

from borg_game.codec import ObservationSpec


class ReplayBatch(NamedTuple):
    """A minibatch as numpy arrays, first axis the batch."""

    observations: npt.NDArray[np.generic]
    actions: npt.NDArray[np.int64]
    rewards: npt.NDArray[np.float32]
    next_observations: npt.NDArray[np.generic]
    terminated: npt.NDArray[np.float32]
    timestamps_ns: npt.NDArray[np.int64]
    # Rows of the sampler's store the batch came from (for per-row priorities); None when it has none.
    indices: npt.NDArray[np.int64] | None = None
    # Importance-sampling weights of prioritized draws, one per row; None: all rows weigh the same.
    weights: npt.NDArray[np.float32] | None = None
    # n-step transitions: each row's later raw rewards, zero-padded to the longest span among the
    # rows, and its span (1 + its later rewards). None: every row spans one step.
    later_rewards: npt.NDArray[np.float32] | None = None
    spans: npt.NDArray[np.int64] | None = None


def padded_later_rewards(
    rows: Sequence[tuple[float, ...]],
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.int64]] | None:
    """The later rewards of `rows` as a zero-padded [rows, longest] array, and each row's span;
    None when every row spans one step (the common case, left at no cost)."""
    width = max((len(rewards) for rewards in rows), default=0)
    if width == 0:
        return None
    padded = np.zeros((len(rows), width), dtype=np.float32)
    spans = np.ones(len(rows), dtype=np.int64)
    for row, rewards in enumerate(rows):
        if rewards:
            padded[row, : len(rewards)] = rewards
            spans[row] += len(rewards)
    return padded, spans


class ReplaySampler(Protocol):
    """The sample side of the replay memory."""

    def sync(self) -> bool:
        """Bring the sampler up to date with Redis; False when Redis could not be reached."""
        ...

    def expect(self, spec: ObservationSpec) -> None:
        """Draw only observations of `spec` (the agent's env's): others are skipped and counted as corrupt."""
        ...

    def size(self) -> int:
        """How many transitions the sampler can draw from."""
        ...

    def sample(self, batch_size: int, rng: np.random.Generator) -> ReplayBatch | None:
        """A batch of distinct draws, or None when there is not enough to draw from."""
        ...

    @property
    def hive_pushed(self) -> int:
        """The hive's push counter as last seen: transitions pushed by all agents."""
        ...

    @property
    def corrupt_entries(self) -> int:
        """Stored entries skipped because they could not be decoded."""
        ...
