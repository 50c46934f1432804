"""A sum tree over a fixed number of slots, updated and searched in vectorized batches.

The structure behind proportional prioritized replay (Schaul et al. 2016): each slot holds a
non-negative priority, and drawing slot i with probability p_i / sum(p) is one descent from
the root. A binary tree has 20 levels at 1M slots, each a round of numpy calls; this tree has
32 children per node, so a million slots take 4 levels. The top one is a single row shared
by every query (one running sum, one binary search); each level below is, for the whole
batch of queries at once, one gather of `batch x 32` children, one running sum along the
rows and one comparison. Fanouts of 16, 64 and 128 measured slower.

Every inner node is recomputed from its children (never patched by adding a difference),
so rounding errors do not pile up over millions of updates.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

FANOUT = 32


class SumTree:
    """Priorities of `capacity` slots and the sums of every block of FANOUT ** k slots."""

    def __init__(self, capacity: int, fanout: int = FANOUT) -> None:
        if capacity < 1:
            raise ValueError(f"a sum tree needs at least one slot, got capacity={capacity}")
        if fanout < 2:
            raise ValueError(f"a sum tree's fanout must be at least 2, got {fanout}")
        self.capacity = capacity
        self.fanout = fanout
        # levels[0] holds the slots' priorities, levels[k + 1][j] the sum of block j of
        # levels[k]; each level is kept as (blocks, fanout) rows, zero-padded, so that a node's
        # children are one contiguous row. The top level is a single row: the root's children.
        self.levels: list[npt.NDArray[np.float64]] = []
        nodes = capacity
        while True:
            blocks = -(-nodes // fanout)
            self.levels.append(np.zeros((blocks, fanout), dtype=np.float64))
            if blocks == 1:
                break
            nodes = blocks

    @property
    def total(self) -> float:
        """The sum of all priorities."""
        return float(self.levels[-1].sum())

    def priorities(self, slots: npt.NDArray[np.int64]) -> npt.NDArray[np.float64]:
        """The priorities held at `slots`."""
        return self.levels[0].reshape(-1)[slots]

    def update(self, slots: npt.NDArray[np.int64], priorities: npt.NDArray[np.floating]) -> None:
        """Set the priorities of `slots` (for a slot given twice, the last one counts)."""
        slots = np.asarray(slots, dtype=np.int64)
        if slots.size == 0:
            return
        if slots.min() < 0 or slots.max() >= self.capacity:
            raise IndexError(f"slots must lie in [0, {self.capacity}), got {slots.min()}..{slots.max()}")
        values = np.asarray(priorities, dtype=np.float64)
        if not np.all(values >= 0.0) or not np.all(np.isfinite(values)):
            raise ValueError("priorities must be finite and non-negative")
        self.levels[0].reshape(-1)[slots] = values
        nodes = slots
        for below, level in zip(self.levels, self.levels[1:], strict=False):
            nodes = nodes // self.fanout
            if nodes.size > self.fanout:  # a big update shares parents: recompute each once
                nodes = np.unique(nodes)
            # A parent named twice is recomputed twice from the same children: same result.
            level.reshape(-1)[nodes] = below.take(nodes, axis=0).sum(axis=1)

    def find(self, masses: npt.NDArray[np.float64]) -> npt.NDArray[np.int64]:
        """For each mass m in [0, total), the slot i with prefix(i) <= m < prefix(i) + p_i.

        Slots of zero priority are never returned.
        """
        remaining = np.asarray(masses, dtype=np.float64).copy()
        # The top level is one row, the same for every query: one running sum and a binary
        # search for all of them.
        top_cumulative = np.cumsum(self.levels[-1][0])
        np.minimum(remaining, np.nextafter(top_cumulative[-1], 0.0), out=remaining)
        nodes = np.searchsorted(top_cumulative, remaining, side="right")
        # Subtract the running sum before the chosen child, never (sum up to it - its mass):
        # that could round above the mass and leave a negative remainder, which would pick
        # a zero-priority first child below.
        remaining -= np.where(nodes > 0, top_cumulative[nodes - 1], 0.0)
        rows = np.arange(remaining.size) * self.fanout
        for level in reversed(self.levels[:-1]):
            cumulative = np.add.accumulate(level.take(nodes, axis=0), axis=1)
            # Keep each mass strictly below its row's sum (which its parent node may round a
            # little differently): then the first running sum above it is of a positive child.
            np.minimum(remaining, np.nextafter(cumulative[:, -1], 0.0), out=remaining)
            chosen = np.argmax(cumulative > remaining[:, None], axis=1)
            remaining -= np.where(chosen > 0, cumulative.reshape(-1)[rows + chosen - 1], 0.0)
            nodes = nodes * self.fanout + chosen
        return nodes.astype(np.int64, copy=False)

    def sample_stratified(self, count: int, rng: np.random.Generator) -> npt.NDArray[np.int64]:
        """`count` slots drawn in proportion to priority, one from each of `count` equal strata
        of the total mass (Schaul et al.'s variance-reducing draw)."""
        total = self.total
        if total <= 0.0:
            raise ValueError("cannot sample a sum tree whose priorities are all zero")
        masses = (np.arange(count) + rng.random(count)) * (total / count)
        return self.find(masses)
