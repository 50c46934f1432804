"""The mirror's local store: a ring of transitions kept column by column, and how rows are drawn.

`IndexSampler` is the drawing strategy: it hears which slots a pull (re)wrote and picks the
rows of each batch. `UniformIndexSampler` draws uniformly; a prioritized sampler keeps its
priorities per slot and slots in here.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np
import numpy.typing as npt

from borg_game.codec import ObservationSpec, StoredColumns, TransitionCodec
from borg_game.replay import ReplayBatch, padded_later_rewards


class IndexSampler(Protocol):
    """Chooses which rows of a `MirrorStore` a batch draws."""

    def added(self, first_slot: int, count: int, capacity: int) -> None:
        """Rows `first_slot`, `first_slot + 1`, ... (`count` of them, modulo `capacity`) were written."""
        ...

    def sample(self, size: int, batch_size: int, rng: np.random.Generator) -> npt.NDArray[np.int64]:
        """`batch_size` row indices among the `size` rows held."""
        ...


class UniformIndexSampler:
    """Every held row equally likely."""

    def added(self, first_slot: int, count: int, capacity: int) -> None:
        """Uniform draws keep no state per row."""

    def sample(self, size: int, batch_size: int, rng: np.random.Generator) -> npt.NDArray[np.int64]:
        """Distinct rows while the store is small; with replacement (much cheaper) once a repeat is unlikely."""
        if batch_size * 50 > size:
            return rng.choice(size, size=batch_size, replace=False).astype(np.int64)
        return rng.integers(0, size, size=batch_size, dtype=np.int64)


class MirrorStore:
    """The mirror's ring of transitions, column by column, like SB3's preallocated buffers.

    Scalars live in numpy columns. Small observations (vectors) are decoded once on pull into
    dense arrays; large ones (frame stacks) stay zstd-compressed, since decoded Pong stacks
    would cost 56 KB a transition, and are decompressed straight into the batch on sample.
    """

    DENSE_LIMIT_BYTES = 1024

    def __init__(self, capacity: int, spec: ObservationSpec) -> None:
        self.capacity = capacity
        self.spec = spec
        self.size = 0
        self.cursor = 0
        self.actions = np.zeros(capacity, dtype=np.int64)
        self.rewards = np.zeros(capacity, dtype=np.float32)
        # n-step transitions' later rewards, zero-padded; no columns until a pull brings one.
        self.later_rewards = np.zeros((capacity, 0), dtype=np.float32)
        self.spans = np.ones(capacity, dtype=np.int64)
        self.terminated = np.zeros(capacity, dtype=np.float32)
        self.timestamps_ns = np.zeros(capacity, dtype=np.int64)
        self.dense = spec.nbytes <= self.DENSE_LIMIT_BYTES
        if self.dense:
            self.states = np.zeros((capacity, *spec.shape), dtype=spec.dtype)
            self.next_states = np.zeros((capacity, *spec.shape), dtype=spec.dtype)
        else:
            self.state_blobs: list[bytes] = [b""] * capacity
            self.next_blobs: list[bytes] = [b""] * capacity
            self.codecs = np.zeros(capacity, dtype=np.int8)
            self.layouts = np.zeros(capacity, dtype=np.int8)

    def extend(self, columns: StoredColumns, codec: TransitionCodec) -> int:
        """Write `columns` (oldest first) over the oldest slots once full; returns the first slot written.

        Column by column: a pull brings thousands of rows, and one numpy assignment per column
        instead of one per row and column is most of what keeping up with the hive costs.
        """
        first = self.cursor
        if len(columns) > self.capacity:  # only the newest `capacity` rows would survive
            first = self.cursor = (self.cursor + len(columns) - self.capacity) % self.capacity
            columns = columns.newest(self.capacity)
        count = len(columns)
        if count == 0:
            return first
        slots = (first + np.arange(count)) % self.capacity
        if self.dense:
            for index, slot in enumerate(slots.tolist()):
                codec.fill(
                    columns.compressions[index],
                    columns.layouts[index],
                    columns.state_blobs[index],
                    columns.next_blobs[index],
                    self.states[slot],
                    self.next_states[slot],
                )
        else:
            head = min(count, self.capacity - first)  # the ring may wrap once
            self.state_blobs[first : first + head] = columns.state_blobs[:head]
            self.state_blobs[: count - head] = columns.state_blobs[head:]
            self.next_blobs[first : first + head] = columns.next_blobs[:head]
            self.next_blobs[: count - head] = columns.next_blobs[head:]
            self.codecs[slots] = columns.compressions
            self.layouts[slots] = columns.layouts
        self.actions[slots] = columns.actions
        self.rewards[slots] = columns.rewards
        self._extend_later_rewards(slots, columns.later_rewards)
        self.terminated[slots] = columns.terminated
        self.timestamps_ns[slots] = columns.timestamps_ns
        self.cursor = (first + count) % self.capacity
        self.size = min(self.size + count, self.capacity)
        return first

    def _extend_later_rewards(self, slots: npt.NDArray[np.int64], rows: list[tuple[float, ...]]) -> None:
        n_step = padded_later_rewards(rows)
        if n_step is None:
            if self.later_rewards.shape[1]:  # one-step rows over slots that held n-step ones
                self.later_rewards[slots] = 0.0
                self.spans[slots] = 1
            return
        padded, spans = n_step
        if padded.shape[1] > self.later_rewards.shape[1]:  # a longer span than any before: widen once
            widened = np.zeros((self.capacity, padded.shape[1]), dtype=np.float32)
            widened[:, : self.later_rewards.shape[1]] = self.later_rewards
            self.later_rewards = widened
        self.later_rewards[slots] = 0.0
        self.later_rewards[slots, : padded.shape[1]] = padded
        self.spans[slots] = spans

    def gather(self, indices: npt.NDArray[np.int64], codec: TransitionCodec) -> ReplayBatch:
        """The batch of rows `indices`, observations decompressed straight into it when stored compressed."""
        if self.dense:
            observations, next_observations = self.states[indices], self.next_states[indices]
        else:
            shape = (len(indices), *self.spec.shape)
            observations = np.empty(shape, dtype=self.spec.dtype)
            next_observations = np.empty(shape, dtype=self.spec.dtype)
            rows = indices.tolist()
            codec.fill_rows(
                self.codecs[indices].tolist(),
                self.layouts[indices].tolist(),
                [self.state_blobs[index] for index in rows],
                [self.next_blobs[index] for index in rows],
                observations,
                next_observations,
            )
        return ReplayBatch(
            observations=observations,
            actions=self.actions[indices],
            rewards=self.rewards[indices],
            next_observations=next_observations,
            terminated=self.terminated[indices],
            timestamps_ns=self.timestamps_ns[indices],
            indices=indices,
            later_rewards=self.later_rewards[indices] if self.later_rewards.shape[1] else None,
            spans=self.spans[indices] if self.later_rewards.shape[1] else None,
        )
