"""`make bench-video`: what recording evaluation videos costs, measured side by side.

    python game/benchmarks/video_recording.py [--envs ALE/Pong-v5,CartPole-v1] [--steps 1500] [--rounds 3]

Each round times, on the same seeds and actions, one after the other (medians over rounds):

- off: the evaluation env as `record_video=false` makes it (no render mode, no wrapper).
- idle: as `record_video=true` makes it (render_mode='rgb_array', tapped by EvaluationVideos)
  but not recording, as in every episode after the first of an evaluation. off/idle is the
  cost of the switch alone.
- recording: every step rendered at native resolution and streamed to the MP4 encoder
  (ffmpeg, a separate process), as in the first episode of an evaluation.
- episode: one whole evaluation episode through `EvaluationVideos.record`, kept as a video,
  against the same episode unrecorded; then the TensorBoard GIF made from that MP4 (kept
  videos only).
- encode_fps: the MP4 writer alone on frames rendered beforehand; gif_fps: the GIF alone.

The actions are random for Pong (a random player loses 0-21 in ~900 steps) and a pole-angle
rule for CartPole (500-step episodes, as a solved agent plays). No Q-network runs, so the
ratios are the worst case: a real evaluation also spends a forward pass on every step.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

from borg_game.envs import make_env
from borg_game.eval_videos import EvaluationVideos
from borg_game.video_clip import GifAnimation, Mp4Writer, frames_per_second, gif_of_mp4, render_frame

Policy = Callable[[Any], int]


def policy_for(env_id: str, env: gym.Env[Any, Any], seed: int) -> Policy:
    """Random actions for Atari; for CartPole push towards where the pole falls."""
    if env_id.startswith("ALE/"):
        rng = np.random.default_rng(seed)
        num_actions = int(env.action_space.n)  # type: ignore[attr-defined]
        return lambda _observation: int(rng.integers(num_actions))
    return lambda observation: int(3.0 * observation[2] + observation[3] > 0.0)


def timed_steps(env: gym.Env[Any, Any], policy: Policy, steps: int, on_step: Callable[[], None]) -> float:
    """Seconds for `steps` steps (resetting at episode ends), calling `on_step` after each."""
    observation, _ = env.reset(seed=1)
    started = time.perf_counter()
    for _ in range(steps):
        observation, _, terminated, truncated, _ = env.step(policy(observation))
        on_step()
        if terminated or truncated:
            observation, _ = env.reset()
    return time.perf_counter() - started


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


def measure_round(env_id: str, steps: int, store: Path) -> dict[str, float]:
    """One round of every measurement for `env_id`."""
    results: dict[str, float] = {}
    off_env = make_env(env_id, seed=1)
    results["off_s"] = timed_steps(off_env, policy_for(env_id, off_env, 2), steps, lambda: None)

    idle = EvaluationVideos(store, "bench", enabled=True, every_evals=1, max_frames=10**9)
    idle_env = idle.wrap(make_env(env_id, seed=1, render_mode=idle.render_mode))
    results["idle_s"] = timed_steps(idle_env, policy_for(env_id, idle_env, 2), steps, lambda: None)

    render_env = make_env(env_id, seed=1, render_mode="rgb_array")
    fps = frames_per_second(render_env)
    mp4 = Mp4Writer(store / "steps.mp4", fps)
    record_frame = lambda: mp4.append(render_frame(render_env))  # noqa: E731  # what the tap does
    results["recording_s"] = timed_steps(render_env, policy_for(env_id, render_env, 2), steps, record_frame)
    started = time.perf_counter()
    mp4.close()
    results["mp4_close_s"] = time.perf_counter() - started

    started = time.perf_counter()
    lengths: list[int] = []
    one_episode(off_env, policy_for(env_id, off_env, 3), lengths)
    results["episode_off_s"] = time.perf_counter() - started
    started = time.perf_counter()
    idle.record(1, -np.inf, lambda: one_episode(idle_env, policy_for(env_id, idle_env, 3), lengths))
    results["episode_recorded_s"] = time.perf_counter() - started
    results["episode_frames"] = float(lengths[-1] + 1)  # the reset frame and one per step
    started = time.perf_counter()
    gif_of_mp4(idle.kept[-1], fps)
    results["episode_gif_s"] = time.perf_counter() - started

    frames = []
    observation, _ = render_env.reset(seed=1)
    policy = policy_for(env_id, render_env, 4)
    for _ in range(min(steps, 500)):
        frames.append(render_frame(render_env))
        observation, _, terminated, truncated, _ = render_env.step(policy(observation))
        if terminated or truncated:
            observation, _ = render_env.reset()
    encoder = Mp4Writer(store / "encode.mp4", fps)
    started = time.perf_counter()
    for frame in frames:
        encoder.append(frame)
    encoder.close()
    results["encode_fps"] = len(frames) / (time.perf_counter() - started)
    animation = GifAnimation(fps)
    started = time.perf_counter()
    for frame in frames:
        animation.offer(frame)
    animation.encode()
    results["gif_fps"] = len(frames) / (time.perf_counter() - started)
    for env in (off_env, idle_env, render_env):
        env.close()
    return results


def main() -> None:
    """Run the rounds and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--envs", default="ALE/Pong-v5,CartPole-v1")
    parser.add_argument("--steps", type=int, default=1500, help="steps per timed run")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    for env_id in args.envs.split(","):
        rounds = []
        with tempfile.TemporaryDirectory() as store:
            for index in range(args.rounds):
                print(f"{env_id}: round {index + 1}/{args.rounds}", flush=True)
                rounds.append(measure_round(env_id, args.steps, Path(store)))
        median = {key: statistics.median(result[key] for result in rounds) for key in rounds[0]}
        report(env_id, args.steps, args.rounds, median)


def report(env_id: str, steps: int, rounds: int, median: dict[str, float]) -> None:
    """Print one environment's medians and ratios."""
    off, idle, recording = median["off_s"], median["idle_s"], median["recording_s"]
    episode_off, episode_recorded = median["episode_off_s"], median["episode_recorded_s"]
    print(f"\n{env_id}: {steps} steps per run, medians of {rounds} rounds")
    print(f"  steps/s, off (no render mode)         {steps / off:8.0f}")
    print(f"  steps/s, on but not recording (idle)  {steps / idle:8.0f}   time idle/off {idle / off:.3f}")
    print(
        f"  steps/s, recording every frame        {steps / recording:8.0f}   time recording/off {recording / off:.2f}"
    )
    print(f"  recording cost per frame              {1e3 * (recording - off) / steps:8.2f} ms")
    print(f"  closing that MP4                      {median['mp4_close_s']:8.2f} s")
    print(
        f"  one episode of {median['episode_frames']:.0f} frames: {episode_off:.2f} s off, "
        f"{episode_recorded:.2f} s recorded and kept (ratio {episode_recorded / episode_off:.2f}), "
        f"+{median['episode_gif_s']:.2f} s for its TensorBoard GIF"
    )
    print(f"  MP4 encoding alone                    {median['encode_fps']:8.0f} frames/s")
    print(f"  GIF (quantize + encode) alone         {median['gif_fps']:8.0f} frames/s")


if __name__ == "__main__":
    main()
