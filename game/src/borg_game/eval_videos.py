"""Videos of evaluation episodes: which evaluations are kept, and the recording itself.

The first episode of every evaluation is recorded from the evaluation env at the game's
native resolution (Pong 210x160, not the 84x84 network input). Once the evaluation's score
is known, the video is kept for the first evaluation, each new best and every Kth one, as
`<model_store>/videos/<agent_id>/eval-<step>.mp4` and as an animated GIF in TensorBoard
(`eval/video`, made from the kept MP4); otherwise it is deleted. Whether an evaluation is a new best is only known at
its end, hence recording every one.

With `record_video` off the evaluation env is built exactly as before (no render mode, no
wrapper), so play is untouched. With it on, the env is made with render_mode='rgb_array',
which renders nothing until asked: only the recorded episode pays for frames.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal, Protocol, SupportsFloat

import gymnasium as gym
import numpy as np
from loguru import logger

from borg_game.settings import Settings
from borg_game.video_clip import Frame, Mp4Writer, frames_per_second, gif_of_mp4, render_frame

VIDEO_TAG = "eval/video"


class AnimationSink(Protocol):
    """Somewhere the GIF of a kept evaluation video goes: the training log, for its TensorBoard."""

    def add_animation(self, tag: str, gif: bytes, height: int, width: int, step: int) -> None:
        """Store one animated GIF at `step`."""
        ...


def video_dir(model_store: Path, agent_id: str) -> Path:
    """Where the videos of one agent are written."""
    return model_store / "videos" / agent_id


def keep_reason(evaluation: int, new_best: bool, every_evals: int) -> str | None:
    """Why the video of the `evaluation`th evaluation (counted from 1 at the agent's start) is kept, or None."""
    if evaluation == 1:
        return "first evaluation"
    if new_best:
        return "new best"
    if every_evals and evaluation % every_evals == 0:
        return f"one of every {every_evals} evaluations"
    return None


class _Recording:
    """One episode being recorded into an MP4."""

    def __init__(self, path: Path, fps: float, max_frames: int) -> None:
        self.mp4 = Mp4Writer(path, fps)
        self.fps = fps
        self.max_frames = max_frames
        self.done = False

    def add(self, frame: Frame) -> None:
        self.mp4.append(frame)
        if self.mp4.frames >= self.max_frames:
            self.done = True  # the episode plays on, unrecorded


class _FrameTap(gym.Wrapper[Any, Any, Any, Any]):
    """Feeds the rendered frames of the first episode of an evaluation to its recording."""

    def __init__(self, env: gym.Env[Any, Any], videos: EvaluationVideos) -> None:
        super().__init__(env)
        self._videos = videos

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[Any, dict[str, Any]]:
        result = super().reset(seed=seed, options=options)
        recording = self._videos.start_recording(frames_per_second(self.env))
        if recording is not None:
            recording.add(render_frame(self.env))
        return result

    def step(self, action: Any) -> tuple[Any, SupportsFloat, bool, bool, dict[str, Any]]:
        result = super().step(action)
        recording = self._videos.recording
        if recording is not None and not recording.done:
            recording.add(render_frame(self.env))
            recording.done = recording.done or result[2] or result[3]
        return result


class EvaluationVideos:
    """Records evaluation episodes and keeps the first, each new best and every Kth as videos.

    Use: `env = videos.wrap(make_env(..., render_mode=videos.render_mode))`, then
    `scores = videos.record(step, best_so_far, lambda: evaluate(..., env, ...))`.
    """

    def __init__(
        self,
        model_store: Path,
        agent_id: str,
        enabled: bool,
        every_evals: int,
        max_frames: int,
        animations: AnimationSink | None = None,
    ) -> None:
        self.enabled = enabled
        self.directory = video_dir(model_store, agent_id)
        self.every_evals = every_evals
        self.max_frames = max_frames
        self.animations = animations
        self.recording: _Recording | None = None
        self.kept: list[Path] = []
        self._evaluations = 0
        self._armed_path: Path | None = None

    @classmethod
    def from_settings(cls, settings: Settings, agent_id: str, animations: AnimationSink | None) -> EvaluationVideos:
        """Built from `record_video`, `video_every_evals`, `video_max_frames` and `model_store`."""
        return cls(
            settings.model_store,
            agent_id,
            settings.record_video,
            settings.video_every_evals,
            settings.video_max_frames,
            animations,
        )

    @property
    def render_mode(self) -> Literal["rgb_array"] | None:
        """The render mode the evaluation env is made with: None when recording is off."""
        return "rgb_array" if self.enabled else None

    def wrap(self, env: gym.Env[Any, Any]) -> gym.Env[Any, Any]:
        """The evaluation env, tapped for frames when recording is on, else `env` itself."""
        return _FrameTap(env, self) if self.enabled else env

    def start_recording(self, fps: float) -> _Recording | None:
        """Called by the tap at each reset: begins the armed recording, once per evaluation."""
        if self._armed_path is None:
            return None
        self.recording = _Recording(self._armed_path, fps, self.max_frames)
        self._armed_path = None
        return self.recording

    def record(self, step: int, best_so_far: float, play: Callable[[], list[float]]) -> list[float]:
        """Run the evaluation `play`, recording its first episode; keep the video if it is due."""
        if not self.enabled:
            return play()
        self._evaluations += 1
        self._armed_path = self.directory / f"eval-{step:012d}.mp4"
        try:
            scores = play()
        except BaseException:
            self._finish(None, step)
            raise
        new_best = bool(scores) and float(np.mean(scores)) > best_so_far  # none when a stop cut it short
        reason = keep_reason(self._evaluations, new_best, self.every_evals)
        self._finish(reason, step)
        return scores

    def _finish(self, reason: str | None, step: int) -> None:
        recording, self.recording, self._armed_path = self.recording, None, None
        if recording is None:
            return
        if reason is None:
            recording.mp4.discard()
            return
        path = recording.mp4.close()
        self.kept.append(path)
        logger.info("video of the evaluation at step {} ({}): {} ({} frames)", step, reason, path, recording.mp4.frames)
        if self.animations is not None:
            try:
                gif, height, width = gif_of_mp4(path, recording.fps)
                self.animations.add_animation(VIDEO_TAG, gif, height, width, step)
            except Exception as error:  # TensorBoard's copy is a convenience: never stop training for it
                logger.warning("could not add {} to TensorBoard: {}", path, error)
