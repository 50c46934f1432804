"""Environment construction: the Atari preprocessing stack for ALE ids, plain for the rest."""

from __future__ import annotations

import os
from typing import Any

import gymnasium as gym


def is_atari(env_id: str) -> bool:
    """ALE environments get frame preprocessing and stacking."""
    return env_id.startswith("ALE/")


def make_env(
    env_id: str,
    seed: int,
    repeat_action_probability: float = 0.25,
    frame_stack: int = 4,
    noop_max: int = 30,
    render_mode: str | None = None,
) -> gym.Env[Any, Any]:
    """Build one environment; its observations are what the agent stores and learns from.

    `render_mode` ('rgb_array' for videos, 'human' for a window) changes no observation.
    """
    if is_atari(env_id):
        import ale_py

        gym.register_envs(ale_py)
        # frameskip=1 here: AtariPreprocessing does the skipping (with max-pooling over the
        # last two frames); skipping twice would play every 16th frame.
        env = gym.make(
            env_id, frameskip=1, repeat_action_probability=repeat_action_probability, render_mode=render_mode
        )
        # First wrapper, so the episode statistics are the real game score and length.
        env = gym.wrappers.RecordEpisodeStatistics(env)
        env = gym.wrappers.AtariPreprocessing(
            env, noop_max=noop_max, frame_skip=4, screen_size=84, grayscale_obs=True, scale_obs=False
        )
        env = gym.wrappers.FrameStackObservation(env, frame_stack)
    else:
        if render_mode == "rgb_array":
            # pygame (classic control) draws off screen here; without a driver set, SDL probes
            # for a display and prints an error on every headless host.
            os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
        env = gym.make(env_id, render_mode=render_mode)
        env = gym.wrappers.RecordEpisodeStatistics(env)
    env.action_space.seed(seed)
    if not isinstance(env.action_space, gym.spaces.Discrete):
        raise ValueError(f"{env_id} has action space {env.action_space}; DQN needs a Discrete one")
    obs_space = env.observation_space
    if not isinstance(obs_space, gym.spaces.Box) or obs_space.shape is None:
        raise ValueError(f"{env_id} has observation space {obs_space}; a Box is needed")
    return env
