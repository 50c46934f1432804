"""`make bench-video`: what recording evaluation videos costs, measured side by side.

    python game/benchmarks/video_recording.py [--envs ALE/Pong-v5,CartPole-v1] [--steps 600] [--rounds 5]

Each round runs every phase below once, one after the other, on the same seeds and actions;
the table shows sums over the rounds. Every phase is timed in wall seconds and in CPU
seconds (this process plus the ffmpeg encoders it waited for). On a shared machine the wall
time swings with the neighbours' load; the CPU time is the cost itself.

- off: the evaluation env as `record_video=false` makes it (no render mode, no wrapper).
- idle: as `record_video=true` makes it (render_mode='rgb_array', tapped by EvaluationVideos)
  but not recording, as in every episode after the first of an evaluation. idle/off is the
  cost of the switch alone; a second off run after idle shows the noise (off again/off).
- render: every step rendered at native resolution, nothing encoded.
- recording: every step rendered at native resolution and streamed to the MP4 encoder
  (ffmpeg, a separate process), as in the first episode of an evaluation, closing included.
- gif: the TensorBoard GIF made from that MP4 (kept videos only).
- episode_off / episode_recorded: one whole evaluation episode, unrecorded and through
  `EvaluationVideos.record` (recorded and kept as an MP4).

The actions are random for Pong (a random player loses 0-21 in ~970 steps) and a pole-angle
rule for CartPole (500-step episodes, as a solved agent plays). No Q-network runs, so the
ratios are the worst case: a real evaluation also spends a forward pass on every step.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

from borg_game.envs import make_env
from borg_game.eval_videos import EvaluationVideos
from borg_game.video_clip import Mp4Writer, frames_per_second, gif_of_mp4, render_frame

Policy = Callable[[Any], int]


class Ledger:
    """Wall and CPU seconds and frames per phase, summed over rounds."""

    def __init__(self) -> None:
        self.wall: dict[str, float] = defaultdict(float)
        self.cpu: dict[str, float] = defaultdict(float)
        self.frames: dict[str, int] = defaultdict(int)

    @contextmanager
    def phase(self, name: str, frames: int) -> Iterator[None]:
        """Time the block as `name`, which handles `frames` frames (or steps)."""
        started_cpu, started_wall = cpu_seconds(), time.perf_counter()
        yield
        self.wall[name] += time.perf_counter() - started_wall
        self.cpu[name] += cpu_seconds() - started_cpu
        self.frames[name] += frames


def cpu_seconds() -> float:
    """CPU time of this process and of the child processes it has waited for (ffmpeg)."""
    children = os.times()  # children's times come in clock ticks, counted once they are reaped
    return time.process_time() + children.children_user + children.children_system


def policy_for(env_id: str, env: gym.Env[Any, Any], seed: int) -> Policy:
    """Random actions for Atari; for CartPole push towards where the pole falls."""
    if env_id.startswith("ALE/"):
        rng = np.random.default_rng(seed)
        num_actions = int(env.action_space.n)  # type: ignore[attr-defined]
        return lambda _observation: int(rng.integers(num_actions))
    return lambda observation: int(3.0 * observation[2] + observation[3] > 0.0)


def play_steps(env: gym.Env[Any, Any], policy: Policy, steps: int, on_step: Callable[[], object]) -> None:
    """`steps` steps from seed 1 (resetting at episode ends), calling `on_step` after each."""
    observation, _ = env.reset(seed=1)
    for _ in range(steps):
        observation, _, terminated, truncated, _ = env.step(policy(observation))
        on_step()
        if terminated or truncated:
            observation, _ = env.reset()


def one_episode(env: gym.Env[Any, Any], policy: Policy, lengths: list[int]) -> list[float]:
    """Play one episode from seed 1; its score (its length is appended to `lengths`)."""
    observation, _ = env.reset(seed=1)
    steps = 0
    while True:
        observation, _, terminated, truncated, info = env.step(policy(observation))
        steps += 1
        if terminated or truncated:
            lengths.append(steps)
            return [float(info["episode"]["r"])]


def measure_round(env_id: str, steps: int, store: Path, ledger: Ledger) -> None:
    """One round of every phase for `env_id`."""
    off_env = make_env(env_id, seed=1)
    videos = EvaluationVideos(store, "bench", enabled=True, every_evals=1, max_frames=10**9)
    idle_env = videos.wrap(make_env(env_id, seed=1, render_mode=videos.render_mode))
    render_env = make_env(env_id, seed=1, render_mode="rgb_array")
    # off, idle, off again: the two offs bracket idle, and off/off again is the noise level.
    for name, env in (("off", off_env), ("idle", idle_env), ("off_again", off_env)):
        with ledger.phase(name, steps):
            play_steps(env, policy_for(env_id, env, 2), steps, lambda: None)
    with ledger.phase("render", steps):
        play_steps(render_env, policy_for(env_id, render_env, 2), steps, lambda: render_frame(render_env))
    fps = frames_per_second(render_env)
    mp4 = Mp4Writer(store / "steps.mp4", fps)
    with ledger.phase("recording", steps):
        play_steps(render_env, policy_for(env_id, render_env, 2), steps, lambda: mp4.append(render_frame(render_env)))
        mp4.close()
    with ledger.phase("gif", mp4.frames):
        gif_of_mp4(mp4.path, fps)
    lengths: list[int] = []
    with ledger.phase("episode_off", 1):
        one_episode(off_env, policy_for(env_id, off_env, 3), lengths)
    with ledger.phase("episode_recorded", 1):
        videos.record(1, -np.inf, lambda: one_episode(idle_env, policy_for(env_id, idle_env, 3), lengths))
    ledger.frames["episode_length"] += lengths[-1] + 1  # the reset frame and one per step
    for env in (off_env, idle_env, render_env):
        env.close()


def report(env_id: str, steps: int, rounds: int, ledger: Ledger) -> None:
    """Print one environment's sums and ratios."""
    wall, cpu = ledger.wall, ledger.cpu
    print(f"\n{env_id}: {rounds} rounds of {steps} steps per phase (wall s / CPU s, summed)")
    phases = {
        "off": "off (no render mode)",
        "idle": "on, not recording",
        "off_again": "off again",
        "render": "rendering only",
        "recording": "recording",
    }
    for name, label in phases.items():
        print(
            f"  {label:22} {ledger.frames[name] / wall[name]:8.0f} steps/s wall {ledger.frames[name] / cpu[name]:8.0f}"
            f" steps/CPU-s   CPU {1e3 * cpu[name] / ledger.frames[name]:6.2f} ms/step"
        )
    off = (cpu["off"] + cpu["off_again"]) / 2
    print(
        f"  CPU time ratios: idle/off {cpu['idle'] / off:.3f} (off again/off, the noise: "
        f"{cpu['off_again'] / cpu['off']:.3f}), recording/off {cpu['recording'] / off:.2f}"
    )
    per_frame = {name: 1e3 * (cpu[name] - off) / ledger.frames[name] for name in ("render", "recording")}
    print(
        f"  recording adds {per_frame['recording']:.2f} CPU ms per frame: rendering {per_frame['render']:.2f}, "
        f"MP4 encoding {per_frame['recording'] - per_frame['render']:.2f}"
    )
    print(f"  TensorBoard GIF from the MP4: {ledger.frames['gif'] / cpu['gif']:.0f} frames per CPU-s")
    length = ledger.frames["episode_length"] / rounds
    print(
        f"  one episode ({length:.0f} frames): {wall['episode_off'] / rounds:.2f} s off, "
        f"{wall['episode_recorded'] / rounds:.2f} s recorded (wall); CPU {cpu['episode_off'] / rounds:.2f} s vs "
        f"{cpu['episode_recorded'] / rounds:.2f} s, ratio {cpu['episode_recorded'] / cpu['episode_off']:.2f}"
    )


def main() -> None:
    """Run the rounds and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--envs", default="ALE/Pong-v5,CartPole-v1")
    parser.add_argument("--steps", type=int, default=600, help="steps per phase and round")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    for env_id in args.envs.split(","):
        ledger = Ledger()
        with tempfile.TemporaryDirectory() as store:
            for index in range(args.rounds):
                print(f"{env_id}: round {index + 1}/{args.rounds}", flush=True)
                measure_round(env_id, args.steps, Path(store), ledger)
        report(env_id, args.steps, args.rounds, ledger)


if __name__ == "__main__":
    main()
