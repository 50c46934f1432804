"""`python -m borg_game.watch` (`make watch`): see an agent's best model play.

It loads `<model_store>/<env>/best-<agent_id>.pt` (the weights of the agent's best evaluation)
and plays in a window when a display is there ($DISPLAY), otherwise into an MP4 whose path it
prints. Without --agent it takes the best-scoring model of --env, or, without --env, of the
environment whose best model was written last (scores of different games do not compare).
"""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from torch import nn

from borg_game.checkpoint import CHECKPOINT_FORMAT, CheckpointMismatchError, check_compatible, env_model_store
from borg_game.envs import make_env
from borg_game.eval_videos import video_dir
from borg_game.networks import build_q_network
from borg_game.settings import SettingsError, load_settings
from borg_game.video_clip import Mp4Writer, frames_per_second, render_frame

_BEST_PREFIX = "best-"
_BEST_SUFFIX = ".pt"
HOW_TO_MAKE_ONE = (
    "an agent writes best-<agent_id>.pt at each new best evaluation: run `make run` "
    "(ENV=CartPole-v1 evaluates after 5000 steps, Pong after CONFIG_eval_interval=50000)"
)


class WatchError(RuntimeError):
    """No best model to watch, or not one for the asked environment; the message says what to do."""


@dataclass
class BestModel:
    """A best-model file of the store, read with weights_only=True."""

    path: Path
    agent_id: str
    payload: dict[str, Any]

    @property
    def env_id(self) -> str:
        """The environment the model was trained on."""
        return str(self.payload["compatibility"]["env_id"])

    @property
    def eval_score(self) -> float:
        """The evaluation mean that made it the agent's best."""
        return float(self.payload["eval_score"])


def read_best_model(path: Path) -> BestModel:
    """Load one best-<agent_id>.pt; WatchError if it is not a best model this code can read."""
    try:
        payload: dict[str, Any] = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        raise WatchError(f"cannot read {path}: {error}") from error
    if payload.get("format") != CHECKPOINT_FORMAT or "compatibility" not in payload or "model" not in payload:
        raise WatchError(f"{path} is no best model of format {CHECKPOINT_FORMAT} (format {payload.get('format')!r})")
    return BestModel(path, path.name[len(_BEST_PREFIX) : -len(_BEST_SUFFIX)], payload)


def find_best_model(store: Path, agent_id: str | None, env_id: str | None) -> BestModel:
    """The best model of `agent_id`, or the best-scoring one in the store (of `env_id` if given)."""
    if env_id is not None and env_model_store(store, env_id).is_dir():
        store = env_model_store(store, env_id)  # agents keep each environment's models apart
    name = f"{_BEST_PREFIX}{agent_id or '*'}{_BEST_SUFFIX}"
    found = sorted([*store.glob(name), *store.glob(f"*/{name}")])  # the store or its env folders
    if not found and agent_id is not None:
        pattern = f"{_BEST_PREFIX}*{_BEST_SUFFIX}"
        others = sorted(str(path.relative_to(store)) for path in [*store.glob(pattern), *store.glob(f"*/{pattern}")])
        raise WatchError(
            f"no best model of agent {agent_id!r}: looked for {name} in {store.resolve()} and its environment folders"
            + (f"; the store has {', '.join(others)}" if others else "")
            + f". {HOW_TO_MAKE_ONE}"
        )
    if not found:
        raise WatchError(f"no best model in {store.resolve()} (looked for best-*.pt). {HOW_TO_MAKE_ONE}")
    candidates = [read_best_model(path) for path in found]
    fitting = [model for model in candidates if env_id is None or model.env_id == env_id]
    if not fitting:
        trained = ", ".join(f"{model.path.name} on {model.env_id}" for model in candidates)
        raise WatchError(f"no best model for {env_id}: {trained}; drop ENV/--env or pick one of these")
    # Scores of different games do not compare (Pong's -21..21, CartPole's 0..500): without
    # --env, the environment of the most recently written best model is the one meant.
    newest_env = max(fitting, key=lambda model: model.path.stat().st_mtime_ns).env_id
    same_env = [model for model in fitting if model.env_id == newest_env]
    return max(same_env, key=lambda model: (model.eval_score, model.path.stat().st_mtime_ns))


def load_q_network(model: BestModel, env: gym.Env[Any, Any]) -> nn.Module:
    """The model's Q-network, after checking that it fits `env` (CheckpointMismatchError if not)."""
    shape = env.observation_space.shape
    assert shape is not None
    saved = model.payload["compatibility"]
    num_actions = int(env.action_space.n)  # type: ignore[attr-defined]
    expected = {"env_id": saved["env_id"], "observation_shape": list(shape), "num_actions": num_actions}
    check_compatible(saved, expected, model.path)
    q_network = build_q_network(tuple(shape), num_actions, tuple(saved["mlp_hidden_sizes"]))
    q_network.load_state_dict(model.payload["model"])
    return q_network.eval()


def play(
    env: gym.Env[Any, Any],
    q_network: nn.Module,
    episodes: int,
    epsilon: float,
    seed: int,
    video: Mp4Writer | None = None,
    max_frames: int | None = None,
) -> list[float]:
    """Play greedy-with-epsilon episodes and return their scores; frames go to `video` if given.

    With `max_frames`, play stops after that many steps and the unfinished episode is dropped.
    """
    rng = np.random.default_rng(seed)
    scores: list[float] = []
    steps = 0

    def show() -> None:
        if video is not None:
            video.append(render_frame(env))

    observation, _ = env.reset(seed=seed)
    show()
    while len(scores) < episodes and (max_frames is None or steps < max_frames):
        if rng.random() < epsilon:
            action = int(rng.integers(env.action_space.n))  # type: ignore[attr-defined]
        else:
            with torch.inference_mode():
                action = int(q_network(torch.as_tensor(observation).unsqueeze(0)).argmax(dim=1).item())
        observation, _, terminated, truncated, info = env.step(action)
        steps += 1
        show()
        if terminated or truncated:
            scores.append(float(info["episode"]["r"]))
            if len(scores) < episodes:
                observation, _ = env.reset()
                show()
    return scores


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(prog="python -m borg_game.watch", description=__doc__.splitlines()[0])
    parser.add_argument("--agent", help="agent id (plays models/best-<agent>.pt); default: the best in the store")
    parser.add_argument("--env", dest="env_id", help="environment id the model must be trained on, e.g. CartPole-v1")
    parser.add_argument("--store", type=Path, help="model store (default: CONFIG_model_store, models)")
    parser.add_argument("--episodes", type=int, default=1, help="episodes to play (default 1)")
    parser.add_argument("--epsilon", type=float, help="exploration rate (default: the model's eval_epsilon)")
    parser.add_argument("--seed", type=int, default=0, help="environment seed (default 0)")
    parser.add_argument("--output", type=Path, help="write this MP4 even when a display is there")
    parser.add_argument("--max-frames", type=int, help="stop after this many steps (one frame each)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the process exit code."""
    args = parse_args(argv)
    try:
        store = args.store or load_settings().model_store
        model = find_best_model(store, args.agent, args.env_id)
    except (SettingsError, WatchError) as error:
        print(f"watch: {error}", file=sys.stderr)
        return 2
    saved = model.payload.get("settings", {})
    in_window = args.output is None and bool(os.environ.get("DISPLAY"))
    env = make_env(
        model.env_id,
        args.seed,
        float(saved.get("repeat_action_probability", 0.25)),
        int(saved.get("frame_stack", 4)),
        int(saved.get("noop_max", 30)),
        render_mode="human" if in_window else "rgb_array",
    )
    try:
        q_network = load_q_network(model, env)
    except CheckpointMismatchError as error:
        print(f"watch: {error}", file=sys.stderr)
        return 2
    epsilon = args.epsilon if args.epsilon is not None else float(saved.get("eval_epsilon", 0.0))
    print(f"watch: {model.path} ({model.env_id}, step {model.payload.get('step')}, eval {model.eval_score:.1f})")
    video = None
    if not in_window:
        stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
        path = args.output or video_dir(store, model.agent_id) / f"watch-{stamp}.mp4"
        video = Mp4Writer(path, frames_per_second(env))
    try:
        scores = play(env, q_network, args.episodes, epsilon, args.seed, video, args.max_frames)
    except BaseException:
        if video is not None:
            video.discard()
        raise
    finally:
        env.close()
    if video is not None:
        print(f"watch: video written to {video.close()} ({video.frames} frames)")
    if scores:
        print(f"watch: scores {scores} (epsilon {epsilon})")
    else:
        print(f"watch: stopped after --max-frames {args.max_frames}, before an episode ended")
    return 0


if __name__ == "__main__":
    sys.exit(main())
