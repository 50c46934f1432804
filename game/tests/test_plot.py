"""`make plot`: learning curves from a training log written by the project's own sinks."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from matplotlib import image

from borg_game.plot import (
    AgentCurves,
    TrainingLogError,
    hive_latest_mean,
    moving_mean,
    read_records,
    run_curves,
)
from borg_game.telemetry import JsonLinesSink, TrainingLog


def write_run(path: Path, run_id: str, agents: int = 2, episodes: int = 30) -> None:
    """A run as agents log it: interleaved episodes with a shared push counter, an eval every 10."""
    logs = [TrainingLog(run_id, f"agent-{index}", [JsonLinesSink(path)]) for index in range(agents)]
    hive_step = 0
    for episode in range(1, episodes + 1):
        for log in logs:
            hive_step += 20
            log.record(
                "episode",
                env_id="CartPole-v1",
                episode=episode,
                episode_return=float(10 + episode),
                episode_length=20,
                epsilon=0.5,
                agent_step=20 * episode,
                hive_step=hive_step,
                steps_per_second=100.0,
            )
            if episode % 10 == 0:
                log.record(
                    "eval",
                    env_id="CartPole-v1",
                    agent_step=20 * episode,
                    eval_return_mean=float(100 + episode),
                    eval_return_std=1.0,
                    eval_episodes=5,
                    eval_epsilon=0.0,
                    repeat_action_probability=0.0,
                )
    for log in logs:
        log.close()


def test_plot_command_writes_a_png_of_the_requested_size(tmp_path: Path) -> None:
    log = tmp_path / "training-log.jsonl"
    write_run(log, "run-a")
    output = tmp_path / "curves.png"
    completed = subprocess.run(
        [sys.executable, "-m", "borg_game.plot", str(log), "--output", str(output), "--dpi", "50"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
    assert f"{output}: run run-a, 2 agents, 60 episodes" in completed.stdout
    pixels = image.imread(output)
    assert pixels.shape[:2] == (400, 600)  # 12 x 8 inches at 50 dpi
    assert pixels.std() > 0.05  # curves drawn, not a blank canvas


def test_default_run_is_the_newest_and_the_png_goes_beside_the_log(tmp_path: Path) -> None:
    log = tmp_path / "training-log.jsonl"
    write_run(log, "older", agents=1)
    write_run(log, "newer", agents=3)
    completed = subprocess.run(
        [sys.executable, "-m", "borg_game.plot", str(log), "--dpi", "20"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
    assert (tmp_path / "newer.png").is_file()
    assert "run newer, 3 agents" in completed.stdout


def test_unknown_run_is_refused_with_the_runs_of_the_log(tmp_path: Path) -> None:
    log = tmp_path / "training-log.jsonl"
    write_run(log, "run-a", agents=1, episodes=2)
    with pytest.raises(TrainingLogError, match=r"run 'run-b' is not in the training log; its runs: run-a"):
        run_curves(read_records(log), "run-b")


def test_missing_log_says_how_to_get_one(tmp_path: Path) -> None:
    with pytest.raises(TrainingLogError, match=r"no training log at .*make run"):
        read_records(tmp_path / "absent.jsonl")


def test_torn_last_line_is_skipped_but_a_torn_middle_line_is_an_error(tmp_path: Path) -> None:
    log = tmp_path / "training-log.jsonl"
    write_run(log, "run-a", agents=1, episodes=2)
    whole = log.read_text()
    log.write_text(whole + '{"timestamp": "2026-')
    assert len(read_records(log)) == 2
    log.write_text('{"torn\n' + whole)
    with pytest.raises(TrainingLogError, match=r"training-log.jsonl:1 is not a JSON record"):
        read_records(log)


def test_evaluations_are_placed_at_the_hive_step_of_their_agent_step(tmp_path: Path) -> None:
    log = tmp_path / "training-log.jsonl"
    write_run(log, "run-a", agents=2, episodes=20)
    run = run_curves(read_records(log))
    # agent-1's episode e ends at hive step 40 * e; its evaluations come at agent steps 200 and 400.
    assert run.agents["agent-1"].eval_hive_steps().tolist() == [400.0, 800.0]
    assert run.agents["agent-0"].eval_hive_steps().tolist() == [380.0, 780.0]


def test_evaluation_of_an_agent_without_episodes_has_no_hive_step() -> None:
    curves = AgentCurves(eval_agent_steps=[100], eval_minutes=[1.0], eval_means=[5.0])
    assert np.isnan(curves.eval_hive_steps()).all()


def test_moving_mean_averages_up_to_the_window_before_each_value() -> None:
    assert moving_mean([1.0, 3.0, 5.0, 7.0], window=2).tolist() == [1.0, 2.0, 4.0, 6.0]


def test_hive_evaluation_is_the_mean_of_each_agents_latest() -> None:
    positions = [np.array([1.0, 3.0]), np.array([2.0, np.nan])]
    xs, ys = hive_latest_mean(positions, [[10.0, 30.0], [20.0, 99.0]])
    assert xs.tolist() == [1.0, 2.0, 3.0]
    assert ys.tolist() == [10.0, 15.0, 25.0]
