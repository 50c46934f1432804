"""Proportional prioritized replay (Schaul et al. 2016) over the agent's local mirror.

Each agent keeps its own priorities, from its own TD errors; the hive's Redis list stays as
it is. Transition i is drawn with probability P(i) = p_i / sum_k p_k, where
p_i = (|td_error_i| + epsilon) ** alpha, and its update is weighted by the importance-sampling
weight w_i = (N * P(i)) ** -beta / max_j w_j, N the transitions held and the max taken
over the batch (as Dopamine's Rainbow does; the memory-wide max would need a second tree of
minima), so weights only ever scale an update down. beta rises linearly from its
start value to 1 over a number of agent steps: the bias of non-uniform draws matters most
as the Q-values converge, at the end of training.

A transition not yet learned from has no TD error: it enters at the largest priority seen
so far (1.0 before the first TD error, as in OpenAI Baselines), so that it is drawn soon.
That includes a slot whose old transition the ring just overwrote: the old transition's
priority never carries over to the new one.

`PrioritizedIndexSampler` is the mirror's `IndexSampler` (mirror_store.py) for this: it
holds the priorities of the ring's slots, hears which slots a pull wrote, and picks the
slots of each batch; it knows nothing of Redis or of what a slot holds. The agent adds the
batch's weights and gives back its TD errors.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from borg_game.ddqn import linear_schedule
from borg_game.sum_tree import SumTree


class PrioritizedIndexSampler:
    """Priorities of a ring's slots: told which slots were written, draws slots by priority."""

    def __init__(
        self,
        capacity: int,
        alpha: float = 0.6,
        beta_start: float = 0.4,
        beta_steps: int = 1_000_000,
        epsilon: float = 1e-6,
    ) -> None:
        if not 0.0 <= alpha <= 1.0:
            raise ValueError(f"priority alpha must lie in [0, 1], got {alpha}")
        if not 0.0 <= beta_start <= 1.0:
            raise ValueError(f"priority beta_start must lie in [0, 1], got {beta_start}")
        if beta_steps < 1:
            raise ValueError(f"priority beta_steps must be at least 1, got {beta_steps}")
        if not epsilon > 0.0:
            raise ValueError(f"priority epsilon must be positive, got {epsilon}")
        self.capacity = capacity
        self.alpha = alpha
        self.beta_start = beta_start
        self.beta_steps = beta_steps
        self.epsilon = epsilon
        self.beta = beta_start
        self.max_priority = 1.0  # of the form (|td| + eps) ** alpha; 1.0 until a TD error says more
        self._tree = SumTree(capacity)
        self._rows_added = 0  # slots ever written, counted through `added`
        self._rows_at_sample: int | None = None  # as of the oldest batch not yet updated

    @property
    def total_priority(self) -> float:
        """The sum of all priorities held."""
        return self._tree.total

    def added(self, first_slot: int, count: int, capacity: int) -> None:
        """Slots `first_slot`, `first_slot + 1`, ... (`count` of them, modulo `capacity`) now hold
        new transitions: each enters at the maximum priority."""
        if capacity != self.capacity:
            raise ValueError(f"the ring has {capacity} slots, the priorities were made for {self.capacity}")
        if count <= 0:
            return
        if count >= capacity:
            slots = np.arange(capacity, dtype=np.int64)
        else:
            slots = (first_slot + np.arange(count, dtype=np.int64)) % capacity
        self._tree.update(slots, np.full(slots.size, self.max_priority))
        self._rows_added += count

    def anneal(self, agent_step: int) -> None:
        """Set beta for `agent_step`: linear from beta_start to 1 over beta_steps."""
        self.beta = linear_schedule(agent_step, self.beta_start, 1.0, self.beta_steps)

    def probabilities(self, slots: npt.NDArray[np.int64]) -> npt.NDArray[np.float64]:
        """P(i) of drawing each of `slots`: its priority over the sum of all priorities."""
        return self._tree.priorities(slots) / self._tree.total

    def sample(self, size: int, batch_size: int, rng: np.random.Generator) -> npt.NDArray[np.int64]:
        """`batch_size` slots among the `size` held, by priority: with replacement, one from
        each of `batch_size` equal strata of the priority mass."""
        if self._rows_at_sample is None:
            self._rows_at_sample = self._rows_added
        return self._tree.sample_stratified(batch_size, rng)

    def importance_weights(self, slots: npt.NDArray[np.int64], size: int) -> npt.NDArray[np.float32]:
        """(N * P(i)) ** -beta of each drawn slot, over the batch's largest; N = `size` held."""
        weights = (size * self.probabilities(slots)) ** -self.beta
        weights /= weights.max()
        return weights.astype(np.float32)

    def update_priorities(self, slots: npt.NDArray[np.int64], td_errors: npt.NDArray[np.floating]) -> None:
        """Set the priorities of sampled `slots` from the TD errors the learner just measured.

        A slot written anew since it was sampled keeps its new transition's maximum priority:
        the error measured belongs to the transition that left.
        """
        slots = np.asarray(slots, dtype=np.int64)
        errors = np.abs(np.asarray(td_errors, dtype=np.float64))
        if slots.shape != errors.shape:
            raise ValueError(f"got {slots.shape} slots but {errors.shape} TD errors")
        if self._rows_at_sample is not None:
            overwritten = self._rows_added - self._rows_at_sample
            if overwritten > 0:
                first = self._rows_at_sample % self.capacity
                kept = (slots - first) % self.capacity >= overwritten
                slots, errors = slots[kept], errors[kept]
            self._rows_at_sample = None
        priorities = (errors + self.epsilon) ** self.alpha
        self._tree.update(slots, priorities)
        if priorities.size:
            self.max_priority = max(self.max_priority, float(priorities.max()))
