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
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from borg_game.ddqn import linear_epsilon
from borg_game.replay import MirrorSampler, ReplayBatch
from borg_game.sum_tree import SumTree


class PrioritizedSampler:
    """Draws from a MirrorSampler's ring in proportion to priority; a ReplaySampler.

    Call `update_priorities` with each sampled batch's slots and TD errors after the
    learner's step, and `anneal` with the agent's step to move beta along its schedule.
    """

    def __init__(
        self,
        mirror: MirrorSampler,
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
        self._mirror = mirror
        self._tree = SumTree(mirror.capacity)
        self.alpha = alpha
        self.beta_start = beta_start
        self.beta_steps = beta_steps
        self.epsilon = epsilon
        self.beta = beta_start
        self.max_priority = 1.0  # of the form (|td| + eps) ** alpha; 1.0 until a TD error says more
        self._rows_entered = 0  # the mirror's rows_written as of the last sync
        self._rows_at_sample: int | None = None  # as of the oldest batch not yet updated

    @property
    def hive_pushed(self) -> int:
        """The hive's push counter as of the mirror's last pull."""
        return self._mirror.hive_pushed

    @property
    def corrupt_entries(self) -> int:
        """Entries the mirror skipped on pull."""
        return self._mirror.corrupt_entries

    @property
    def total_priority(self) -> float:
        """The sum of all priorities held."""
        return self._tree.total

    def size(self) -> int:
        """Transitions held by the mirror."""
        return self._mirror.size()

    def sync(self) -> bool:
        """Pull new transitions into the mirror; each enters at the maximum priority."""
        reachable = self._mirror.sync()
        written = self._mirror.rows_written
        new_rows = written - self._rows_entered
        if new_rows > 0:
            capacity = self._mirror.capacity
            if new_rows >= capacity:
                slots = np.arange(capacity, dtype=np.int64)
            else:
                slots = (self._rows_entered + np.arange(new_rows, dtype=np.int64)) % capacity
            self._tree.update(slots, np.full(slots.size, self.max_priority))
            self._rows_entered = written
        return reachable

    def anneal(self, agent_step: int) -> None:
        """Set beta for `agent_step`: linear from beta_start to 1 over beta_steps."""
        self.beta = linear_epsilon(agent_step, self.beta_start, 1.0, self.beta_steps)

    def probabilities(self, slots: npt.NDArray[np.int64]) -> npt.NDArray[np.float64]:
        """P(i) of drawing each of `slots`: its priority over the sum of all priorities."""
        return self._tree.priorities(slots) / self._tree.total

    def sample(self, batch_size: int, rng: np.random.Generator) -> ReplayBatch | None:
        """`batch_size` draws (with replacement, one per stratum of the priority mass), with
        their slots and importance-sampling weights; None while too few are held."""
        held = self._mirror.size()
        if held < batch_size:
            return None
        slots = self._tree.sample_stratified(batch_size, rng)
        weights = (held * self.probabilities(slots)) ** -self.beta
        weights /= weights.max()
        if self._rows_at_sample is None:
            self._rows_at_sample = self._mirror.rows_written
        return self._mirror.gather(slots)._replace(weights=weights.astype(np.float32), slots=slots)

    def update_priorities(self, slots: npt.NDArray[np.int64], td_errors: npt.NDArray[np.floating]) -> None:
        """Set the priorities of sampled `slots` from the TD errors the learner just measured.

        A slot that a pull overwrote since it was sampled keeps its new transition's maximum
        priority: the error measured belongs to the transition that left.
        """
        slots = np.asarray(slots, dtype=np.int64)
        errors = np.abs(np.asarray(td_errors, dtype=np.float64))
        if slots.shape != errors.shape:
            raise ValueError(f"got {slots.shape} slots but {errors.shape} TD errors")
        if self._rows_at_sample is not None:
            overwritten = self._mirror.rows_written - self._rows_at_sample
            if overwritten > 0:
                first = self._rows_at_sample % self._mirror.capacity
                kept = (slots - first) % self._mirror.capacity >= overwritten
                slots, errors = slots[kept], errors[kept]
            self._rows_at_sample = None
        priorities = (errors + self.epsilon) ** self.alpha
        self._tree.update(slots, priorities)
        if priorities.size:
            self.max_priority = max(self.max_priority, float(priorities.max()))
