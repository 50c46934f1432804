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
    RunCurves,
    TrainingLogError,
    hive_latest_mean,
    moving_mean,
    read_records,
    run_curves,
)
from borg_game.telemetry import EpisodeRecord, EvalRecord, JsonLinesSink, TrainingLog


def write_run(path: Path, run_id: str, agents: int = 2, episodes: int = 30) -> None:
    """A run as agents log it: interleaved episodes with a shared push counter, an eval every 10."""
    logs = [TrainingLog(run_id, f"agent-{index}", [JsonLinesSink(path)]) for index in range(agents)]
    hive_step = 0
    for episode in range(1, episodes + 1):
        for log in logs:
            hive_step += 20
            log.write(
                EpisodeRecord(
                    env_id="CartPole-v1",
                    episode=episode,
                    episode_return=float(10 + episode),
                    episode_length=20,
                    epsilon=0.5,
                    agent_step=20 * episode,
                    hive_step=hive_step,
                    steps_per_second=100.0,
                )
            )
            if episode % 10 == 0:
                log.write(
                    EvalRecord(
                        env_id="CartPole-v1",
                        agent_step=20 * episode,
                        eval_return_mean=float(100 + episode),
                        eval_return_std=1.0,
                        eval_episodes=5,
                        eval_epsilon=0.0,
                        repeat_action_probability=0.0,
                        epsilon=0.5,
                    )
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


def test_hive_steps_are_the_sum_of_the_agents_steps_at_each_moment() -> None:
    early = AgentCurves(progress_minutes=[0.0, 2.0], progress_agent_steps=[0, 200])
    late = AgentCurves(progress_minutes=[1.0, 3.0], progress_agent_steps=[10, 110])
    run = RunCurves(run_id="run-a", env_id="CartPole-v1", agents={"agent-0": early, "agent-1": late})
    # at minute 1.5: agent-0 at 150, agent-1 at 35; at minute 4: both held at their last step
    assert run.hive_steps_at([0.0, 1.5, 4.0]).tolist() == [10.0, 185.0, 310.0]


def test_every_agent_step_of_a_run_counts_towards_hive_steps(tmp_path: Path) -> None:
    log = tmp_path / "training-log.jsonl"
    write_run(log, "run-a", agents=2, episodes=20)
    run = run_curves(read_records(log))
    last = max(max(curves.progress_minutes) for curves in run.agents.values())
    assert run.hive_steps_at([last]).tolist() == [800.0]  # 2 agents x 20 episodes x 20 steps


def test_moving_mean_averages_up_to_the_window_before_each_value() -> None:
    assert moving_mean([1.0, 3.0, 5.0, 7.0], window=2).tolist() == [1.0, 2.0, 4.0, 6.0]


def test_hive_evaluation_is_the_mean_of_each_agents_latest() -> None:
    positions = [np.array([1.0, 3.0]), np.array([2.0])]
    xs, ys = hive_latest_mean(positions, [[10.0, 30.0], [20.0]])
    assert xs.tolist() == [1.0, 2.0, 3.0]
    assert ys.tolist() == [10.0, 15.0, 25.0]
