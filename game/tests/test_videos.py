"""Evaluation videos and `python -m borg_game.watch`, on CartPole and Pong with tiny budgets."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import numpy.typing as npt
import pytest
import torch
from PIL import Image, ImageSequence
from tensorboard.backend.event_processing.event_accumulator import IMAGES, EventAccumulator

from borg_game import watch
from borg_game.checkpoint import AgentState, Checkpointer, compatibility_of
from borg_game.envs import make_env
from borg_game.eval_videos import VIDEO_TAG, EvaluationVideos, keep_reason
from borg_game.evaluation import evaluate
from borg_game.learner import DoubleDQNLearner
from borg_game.redis_server import EmbeddedRedis
from borg_game.settings import load_settings
from tests.conftest import agent_environment, spawn_agent

PONG_SIZE = (210, 160)  # the ALE screen, not the 84x84 network input
CARTPOLE_SIZE = (400, 600)  # gymnasium's classic-control canvas
PONG_BACKGROUND = np.array([144, 72, 17])  # the brown playfield
Frames = list[npt.NDArray[np.uint8]]


def read_mp4(path: Path) -> Frames:
    """Decode every frame of an MP4 with imageio's ffmpeg reader."""
    return [np.asarray(frame) for frame in iio.imiter(path, plugin="FFMPEG")]


def dominant_colour(frame: npt.NDArray[np.uint8]) -> npt.NDArray[np.int64]:
    """The most frequent RGB value of a frame, coarsened to absorb H.264's small errors."""
    coarse = (frame.reshape(-1, 3).astype(np.int64) // 8) * 8
    colours, counts = np.unique(coarse, axis=0, return_counts=True)
    return np.asarray(colours[counts.argmax()] + 4, dtype=np.int64)


def save_png(frame: npt.NDArray[np.uint8], path: Path) -> Path:
    """One decoded frame as a PNG, to look at."""
    iio.imwrite(path, frame)
    return path


def random_play(env_id: str, videos: EvaluationVideos, steps: int) -> list[float]:
    """A stand-in evaluation: reset the tapped env and take `steps` random actions."""
    env = videos.wrap(make_env(env_id, seed=3, render_mode=videos.render_mode))
    rng = np.random.default_rng(0)
    env.reset(seed=3)
    for _ in range(steps):
        env.step(int(rng.integers(env.action_space.n)))  # type: ignore[attr-defined]
    env.close()
    return [0.0]


def test_kept_videos_are_the_first_each_new_best_and_every_kth() -> None:
    kept = [
        keep_reason(evaluation, new_best, every_evals=3)
        for evaluation, new_best in [(1, True), (2, False), (3, False), (4, True), (5, False), (6, False)]
    ]
    assert kept == [
        "first evaluation",
        None,
        "one of every 3 evaluations",
        "new best",
        None,
        "one of every 3 evaluations",
    ]
    assert keep_reason(3, new_best=False, every_evals=0) is None


def test_recording_off_leaves_the_evaluation_env_as_it_was(tmp_path: Path) -> None:
    videos = EvaluationVideos(tmp_path, "a", enabled=False, every_evals=1, max_frames=10)
    env = make_env("CartPole-v1", seed=1, render_mode=videos.render_mode)
    assert videos.render_mode is None and env.render_mode is None
    assert videos.wrap(env) is env
    assert videos.record(100, -np.inf, lambda: [1.0]) == [1.0]
    assert not (tmp_path / "videos").exists()


def test_recording_does_not_change_what_the_evaluation_plays(tmp_path: Path) -> None:
    settings = load_settings({"CONFIG_env_id": "CartPole-v1"}, env_file=None)
    learner = DoubleDQNLearner((4,), 2, settings, torch.device("cpu"))

    def evaluation_scores(videos: EvaluationVideos) -> list[float]:
        env = videos.wrap(make_env("CartPole-v1", seed=7, render_mode=videos.render_mode))
        return videos.record(1, -np.inf, lambda: evaluate(learner, env, 3, 0.3, np.random.default_rng(5), seed=11))

    recorded = EvaluationVideos(tmp_path, "a", enabled=True, every_evals=0, max_frames=10_000)
    unrecorded = EvaluationVideos(tmp_path, "b", enabled=False, every_evals=0, max_frames=10_000)
    scores = evaluation_scores(recorded)
    assert scores == evaluation_scores(unrecorded)
    # Only the first episode is recorded: a CartPole return is its length, plus the reset frame.
    (video,) = recorded.kept
    assert len(read_mp4(video)) == scores[0] + 1


class FailingAnimations:
    def add_animation(self, tag: str, gif: bytes, height: int, width: int, step: int) -> None:
        raise OSError("disk full")


def test_a_failing_tensorboard_copy_keeps_the_video_and_the_scores(tmp_path: Path) -> None:
    videos = EvaluationVideos(
        tmp_path, "c", enabled=True, every_evals=0, max_frames=100, animations=FailingAnimations()
    )
    assert videos.record(1000, -np.inf, lambda: random_play("CartPole-v1", videos, steps=5)) == [0.0]
    assert [path.name for path in videos.kept] == ["eval-000000001000.mp4"]


def test_pong_evaluation_video_is_kept_at_native_resolution_and_capped(tmp_path: Path) -> None:
    videos = EvaluationVideos(tmp_path, "pong-0", enabled=True, every_evals=0, max_frames=120)
    videos.record(4000, -np.inf, lambda: random_play("ALE/Pong-v5", videos, steps=300))
    path = tmp_path / "videos" / "pong-0" / "eval-000000004000.mp4"
    assert videos.kept == [path]
    frames = read_mp4(path)
    assert len(frames) == 120  # the cap, not the 301 frames played
    assert frames[0].shape == (*PONG_SIZE, 3)
    save_png(frames[-1], tmp_path / "pong.png")
    np.testing.assert_allclose(dominant_colour(frames[-1]), PONG_BACKGROUND, atol=12)
    assert [file.name for file in path.parent.iterdir()] == [path.name]  # no temporary file left


def test_evaluation_that_is_not_due_leaves_no_video(tmp_path: Path) -> None:
    videos = EvaluationVideos(tmp_path, "c", enabled=True, every_evals=0, max_frames=100)
    videos.record(1000, -np.inf, lambda: random_play("CartPole-v1", videos, steps=5))
    videos.record(2000, 5.0, lambda: random_play("CartPole-v1", videos, steps=5))  # scores 0 <= best 5
    assert [path.name for path in videos.kept] == ["eval-000000001000.mp4"]
    assert sorted(path.name for path in (tmp_path / "videos" / "c").iterdir()) == ["eval-000000001000.mp4"]


def run_watch(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    environment = agent_environment()
    environment.pop("DISPLAY", None)  # no window in tests: watch writes an MP4
    return subprocess.run(
        [sys.executable, "-m", "borg_game.watch", *args],
        cwd=cwd,
        env=environment,
        capture_output=True,
        text=True,
        timeout=300,
    )


def video_path_printed(completed: subprocess.CompletedProcess[str]) -> Path:
    line = next(line for line in completed.stdout.splitlines() if "video written to" in line)
    return Path(line.split("video written to ")[1].split(" (")[0])


def test_cartpole_run_records_its_first_evaluation_and_watch_plays_its_best_model(tmp_path: Path) -> None:
    with EmbeddedRedis() as server:
        agent = spawn_agent(
            tmp_path,
            redis_url=server.url,
            env_id="CartPole-v1",
            agent_id="cart",
            total_steps=600,
            learning_starts=10_000,
            eval_interval=500,
            eval_episodes=2,
            tensorboard_dir="runs",
        )
        output, _ = agent.communicate(timeout=300)
    assert agent.returncode == 0, output
    video = tmp_path / "models" / "videos" / "cart" / "eval-000000000500.mp4"
    frames = read_mp4(video)
    assert len(frames) > 5 and frames[0].shape == (*CARTPOLE_SIZE, 3)
    save_png(frames[0], tmp_path / "cartpole.png")
    assert tuple(dominant_colour(frames[0])) == (252, 252, 252)  # the white canvas...
    assert (frames[0].max(axis=2) < 64).sum() > 500  # ...with the dark cart on it
    # The same episode as an animated GIF in TensorBoard.
    events = EventAccumulator(str(next((tmp_path / "runs").iterdir())), size_guidance={IMAGES: 0})
    events.Reload()
    (image,) = events.Images(VIDEO_TAG)
    assert image.step == 500 and (image.height, image.width) == CARTPOLE_SIZE
    gif = Image.open(io.BytesIO(image.encoded_image_string))
    assert gif.format == "GIF" and len(list(ImageSequence.Iterator(gif))) > 1

    completed = run_watch(tmp_path, "--agent", "cart", "--episodes", "1")
    assert completed.returncode == 0, completed.stderr
    watched = video_path_printed(completed)
    assert (tmp_path / watched).parent == tmp_path / "models" / "videos" / "cart"
    assert read_mp4(tmp_path / watched)[0].shape == (*CARTPOLE_SIZE, 3)


@pytest.fixture
def pong_best_model(tmp_path: Path) -> Path:
    """An untrained Pong network saved as an agent saves its best model."""
    settings = load_settings({"CONFIG_env_id": "ALE/Pong-v5", "CONFIG_model_store": str(tmp_path / "models")}, None)
    env = make_env(settings.env_id, seed=0)
    shape = tuple(env.observation_space.shape or ())
    learner = DoubleDQNLearner(shape, 6, settings, torch.device("cpu"))
    Checkpointer(settings, "pong-0", compatibility_of(settings, shape, 6)).save_best(learner, AgentState(step=7), -21.0)
    return settings.model_store


def test_watch_writes_a_pong_video_at_native_resolution(
    tmp_path: Path, pong_best_model: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("DISPLAY", raising=False)
    output = tmp_path / "pong-watch.mp4"
    assert watch.main(["--store", str(pong_best_model), "--output", str(output), "--max-frames", "60"]) == 0
    assert f"video written to {output}" in capsys.readouterr().out
    frames = read_mp4(output)
    assert len(frames) == 61 and frames[0].shape == (*PONG_SIZE, 3)  # the reset frame and one per step
    save_png(frames[-1], tmp_path / "pong-watch.png")
    np.testing.assert_allclose(dominant_colour(frames[-1]), PONG_BACKGROUND, atol=12)


def test_watch_without_a_best_model_says_where_it_looked_and_how_to_make_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert watch.main(["--store", str(tmp_path / "empty"), "--agent", "nobody"]) == 2
    error = capsys.readouterr().err
    assert f"looked for best-nobody.pt in {(tmp_path / 'empty').resolve()}" in error
    assert "make run" in error


def test_watch_refuses_a_model_of_another_environment(
    pong_best_model: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert watch.main(["--store", str(pong_best_model), "--env", "CartPole-v1"]) == 2
    assert "no best model for CartPole-v1: best-pong-0.pt on ALE/Pong-v5" in capsys.readouterr().err


def test_watch_without_env_takes_the_environment_trained_last(tmp_path: Path, pong_best_model: Path) -> None:
    # An old CartPole model's 9.0 beats Pong's -21 only because the games score differently:
    # without --env, the environment trained last is the one meant.
    settings = load_settings({"CONFIG_env_id": "CartPole-v1", "CONFIG_model_store": str(pong_best_model)}, None)
    env = make_env(settings.env_id, seed=0)
    shape = tuple(env.observation_space.shape or ())
    learner = DoubleDQNLearner(shape, 2, settings, torch.device("cpu"))
    Checkpointer(settings, "cart-0", compatibility_of(settings, shape, 2)).save_best(learner, AgentState(step=9), 9.0)
    cart_path = pong_best_model / "CartPole-v1" / "best-cart-0.pt"
    os.utime(cart_path, ns=(0, 0))  # trained long before the Pong model
    pong_path = pong_best_model / "ALE-Pong-v5" / "best-pong-0.pt"
    assert watch.find_best_model(pong_best_model, None, None).path == pong_path
    assert watch.find_best_model(pong_best_model, "cart-0", None).path == cart_path
    assert watch.find_best_model(pong_best_model, None, "CartPole-v1").path == cart_path
