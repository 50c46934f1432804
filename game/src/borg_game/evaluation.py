"""Evaluation: episodes played at a fixed small epsilon, scored with the real game score."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import gymnasium as gym
import numpy as np

from borg_game.learner import DoubleDQNLearner


def evaluate(
    learner: DoubleDQNLearner,
    env: gym.Env[Any, Any],
    episodes: int,
    epsilon: float,
    rng: np.random.Generator,
    seed: int,
    after_step: Callable[[], None] = lambda: None,
    stop: Callable[[], bool] = lambda: False,
) -> list[float]:
    """Play `episodes` episodes at `epsilon` and return their real scores.

    `after_step` runs after every step: an Atari evaluation plays for minutes, and the agent
    keeps telling the hive it is alive (its status expires after 30 s). When `stop()` turns
    true the evaluation ends at once with the episodes finished so far: a stopping container
    has a grace period to write its final checkpoint, which a Pong evaluation can outlast.
    """
    scores: list[float] = []
    observation, _ = env.reset(seed=seed)
    while len(scores) < episodes and not stop():
        if rng.random() < epsilon:
            action = int(rng.integers(env.action_space.n))  # type: ignore[attr-defined]
        else:
            action = learner.greedy_action(observation)
        observation, _, terminated, truncated, info = env.step(action)
        after_step()
        if terminated or truncated:
            scores.append(float(info["episode"]["r"]))
            observation, _ = env.reset()
    return scores
