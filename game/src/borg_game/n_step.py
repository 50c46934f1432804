"""n-step transitions: an agent's steps folded, before they go to the hive's memory, into
transitions that span up to n steps (CONFIG_n_step), as Ape-X's actors do (Horgan et al.
2018; Rainbow and Ape-X use n = 3).

A folded transition keeps its first step's state, action and reward, carries the raw rewards
of the steps after it (`later_rewards`), and ends where its last step ended: that step's next
observation, terminated and truncated. Each learner discounts (gamma ** k) and clips those
rewards itself (`ddqn.n_step_returns`), so agents with different gammas or clipping can share
one memory. Near an episode's end the spans shorten: no transition crosses an episode.
"""

from __future__ import annotations

from collections import deque
from dataclasses import replace

from borg_game.codec import Transition


class NStepFolder:
    """Holds an agent's last n - 1 steps and hands out each step's n-step transition once it is complete."""

    def __init__(self, n: int) -> None:
        if n < 1:
            raise ValueError(f"n-step transitions span at least one step, not {n}")
        self.n = n
        self._pending: deque[Transition] = deque()

    def add(self, step: Transition) -> list[Transition]:
        """Take one step (a one-step transition); return the transitions it completes, oldest first:
        none while fewer than n steps are held, one when the oldest now spans n, all of the
        held ones when this step ended the episode."""
        if self.n == 1:
            return [step]
        self._pending.append(step)
        if step.terminated or step.truncated:
            return self.flush()
        if len(self._pending) < self.n:
            return []
        folded = self._folded(0)
        self._pending.popleft()
        return [folded]

    def flush(self) -> list[Transition]:
        """Every held step as a transition that ends at the newest step: at an episode's end, or
        when the agent stops (its spans are then shorter, bootstrapped from the last observation)."""
        folded = [self._folded(index) for index in range(len(self._pending))]
        self._pending.clear()
        return folded

    def _folded(self, first: int) -> Transition:
        steps = list(self._pending)[first:]
        last = steps[-1]
        return replace(
            steps[0],
            next_state=last.next_state,
            terminated=last.terminated,
            truncated=last.truncated,
            later_rewards=tuple(step.reward for step in steps[1:]),
        )
