"""`make plot`: learning curves of a local run, from its JSON-lines training log, to a PNG.

The training log (`CONFIG_training_log_file`; `make run` writes `runs/training-log.jsonl`)
is the source, not TensorBoard: every agent of a run appends to the one file, each record
carries its run, agent, agent step and an ISO timestamp, and no TensorBoard reader is needed.

Hive steps are the sum of every agent's step at a moment (what the console of `make run`
shows), each agent's step interpolated between its records. The episode records'
`hive_step` field is not used: it is the push counter as the agent's sampler last read it,
which stays 0 until learning starts and then moves once per training round.

Four panels: episode returns and evaluations, each against hive steps and against minutes
since the run's first record. Thin lines are agents, the thick line is the hive. An
evaluation is placed where its record was written, when it finished.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

if TYPE_CHECKING:
    from matplotlib.axes import Axes

FloatArray = npt.NDArray[np.float64]

# Episodes in the moving mean of a return curve (CleanRL and SB3 report 100-episode means).
DEFAULT_SMOOTHING = 20


class TrainingLogError(ValueError):
    """The training log cannot be plotted; the message says which file and why."""


@dataclass
class AgentCurves:
    """One agent's records of one run, in the order they were written; times in minutes."""

    progress_minutes: list[float] = field(default_factory=list)  # every record with an agent step
    progress_agent_steps: list[int] = field(default_factory=list)
    episode_minutes: list[float] = field(default_factory=list)
    episode_returns: list[float] = field(default_factory=list)
    eval_minutes: list[float] = field(default_factory=list)
    eval_means: list[float] = field(default_factory=list)


@dataclass
class RunCurves:
    """Every agent's curves of one run."""

    run_id: str
    env_id: str
    agents: dict[str, AgentCurves]

    def hive_steps_at(self, minutes: Iterable[float]) -> FloatArray:
        """Steps the whole hive had played at each of these minutes of the run."""
        timelines = [(curves.progress_minutes, curves.progress_agent_steps) for curves in self.agents.values()]
        return summed_steps(timelines, minutes)


def summed_steps(timelines: Iterable[tuple[Sequence[float], Sequence[int]]], moments: Iterable[float]) -> FloatArray:
    """The sum over agents of each one's step at each moment, from its (times, steps) records.

    An agent's step is interpolated linearly between its records, and held at its first
    (last) record before (after) them; an agent without records adds nothing.
    """
    points = np.asarray(list(moments), dtype=np.float64)
    total = np.zeros_like(points)
    for times, steps in timelines:
        if len(times):
            total += np.interp(points, times, steps)
    return total


def _timestamp(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def read_records(path: Path) -> list[dict[str, Any]]:
    """Every record of a JSON-lines training log; a torn last line (a run killed mid-write) is skipped."""
    if not path.is_file():
        raise TrainingLogError(
            f"no training log at {path}: `make run` writes one there (or set CONFIG_training_log_file to a path)"
        )
    records = []
    lines = path.read_text(encoding="utf-8").splitlines()
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError as error:
            if number == len(lines):
                break
            raise TrainingLogError(f"{path}:{number} is not a JSON record: {error}") from None
    return records


def run_ids(records: Iterable[dict[str, Any]]) -> list[str]:
    """The runs of a log, in the order they first appear (the newest last)."""
    return list(dict.fromkeys(str(record["run_id"]) for record in records if "run_id" in record))


def run_curves(records: list[dict[str, Any]], run_id: str | None = None) -> RunCurves:
    """The curves of `run_id` (default: the newest run of the log), minutes from its first record."""
    runs = run_ids(records)
    if not runs:
        raise TrainingLogError("the training log holds no records")
    chosen = run_id or runs[-1]
    if chosen not in runs:
        raise TrainingLogError(f"run {chosen!r} is not in the training log; its runs: {', '.join(runs)}")
    selected = [record for record in records if record.get("run_id") == chosen]
    started = min(_timestamp(record["timestamp"]) for record in selected)
    agents: dict[str, AgentCurves] = {}
    env_id = ""
    for record in selected:
        curves = agents.setdefault(str(record["agent_id"]), AgentCurves())
        minutes = (_timestamp(record["timestamp"]) - started).total_seconds() / 60.0
        if "agent_step" in record:
            curves.progress_minutes.append(minutes)
            curves.progress_agent_steps.append(int(record["agent_step"]))
        if record["type"] == "episode":
            env_id = str(record["env_id"])
            curves.episode_minutes.append(minutes)
            curves.episode_returns.append(float(record["episode_return"]))
        elif record["type"] == "eval":
            curves.eval_minutes.append(minutes)
            curves.eval_means.append(float(record["eval_return_mean"]))
    if not any(curves.episode_returns for curves in agents.values()):
        raise TrainingLogError(f"run {chosen!r} has no finished episode yet: let it run a little longer")
    return RunCurves(run_id=chosen, env_id=env_id, agents=dict(sorted(agents.items())))


def moving_mean(values: Iterable[float], window: int) -> FloatArray:
    """Mean of each value with up to `window - 1` values before it (shorter at the start)."""
    array = np.asarray(list(values), dtype=np.float64)
    sums = np.cumsum(np.insert(array, 0, 0.0))
    counts = np.minimum(np.arange(1, len(array) + 1), window)
    return (sums[1:] - sums[np.arange(1, len(array) + 1) - counts]) / counts


def hive_latest_mean(positions: list[FloatArray], values: list[list[float]]) -> tuple[FloatArray, FloatArray]:
    """The mean over agents of each one's latest evaluation, at every evaluation of any agent."""
    events = sorted(
        (float(position), agent, value)
        for agent, (agent_positions, agent_values) in enumerate(zip(positions, values, strict=True))
        for position, value in zip(agent_positions, agent_values, strict=True)
    )
    latest: dict[int, float] = {}
    xs, ys = [], []
    for position, agent, value in events:
        latest[agent] = value
        xs.append(position)
        ys.append(float(np.mean(list(latest.values()))))
    return np.asarray(xs, dtype=np.float64), np.asarray(ys, dtype=np.float64)


def _draw_returns(axes: Axes, run: RunCurves, by_minutes: bool, smoothing: int) -> None:
    every_x: list[float] = []
    every_return: list[float] = []
    for name, curves in run.agents.items():
        xs = curves.episode_minutes if by_minutes else run.hive_steps_at(curves.episode_minutes).tolist()
        if xs:
            axes.plot(xs, moving_mean(curves.episode_returns, smoothing), linewidth=1.0, alpha=0.6, label=name)
        every_x += xs
        every_return += curves.episode_returns
    order = np.argsort(every_x, kind="stable")
    hive_returns = moving_mean(np.asarray(every_return)[order], smoothing * len(run.agents))
    axes.plot(np.asarray(every_x)[order], hive_returns, color="black", linewidth=2.2, label="hive")
    axes.set_ylabel(f"episode return (mean of {smoothing} per agent)")


def _draw_evaluations(axes: Axes, run: RunCurves, by_minutes: bool) -> None:
    positions: list[FloatArray] = []
    values: list[list[float]] = []
    for name, curves in run.agents.items():
        xs = np.asarray(curves.eval_minutes) if by_minutes else run.hive_steps_at(curves.eval_minutes)
        if len(xs):
            axes.plot(xs, curves.eval_means, marker="o", markersize=3, linewidth=1.0, alpha=0.6, label=name)
        positions.append(xs)
        values.append(curves.eval_means)
    hive_x, hive_y = hive_latest_mean(positions, values)
    if len(hive_x):
        axes.step(hive_x, hive_y, where="post", color="black", linewidth=2.2, label="hive (mean of latest)")
    else:
        axes.text(0.5, 0.5, "no evaluation yet", ha="center", va="center", transform=axes.transAxes)
    axes.set_ylabel("evaluation mean return")


def plot_run(run: RunCurves, output: Path, smoothing: int = DEFAULT_SMOOTHING, dpi: int = 100) -> Path:
    """Draw the four panels of `run` to a PNG at `output` (12 x 8 inches) and return its path."""
    try:
        import matplotlib
    except ImportError:
        raise TrainingLogError(
            "matplotlib is missing: `make plot` installs it (or pip install --group game/pyproject.toml:plot)"
        ) from None
    matplotlib.use("Agg")  # files only: no display needed
    from matplotlib import pyplot

    figure, grid = pyplot.subplots(2, 2, figsize=(12, 8), sharey="row", constrained_layout=True)
    for column, by_minutes in enumerate((False, True)):
        _draw_returns(grid[0][column], run, by_minutes, smoothing)
        _draw_evaluations(grid[1][column], run, by_minutes)
        for row in (0, 1):
            grid[row][column].set_xlabel("minutes since the run started" if by_minutes else "hive steps")
            grid[row][column].grid(alpha=0.3)
    grid[0][1].legend(loc="best", fontsize="small")
    grid[1][1].legend(loc="best", fontsize="small")
    figure.suptitle(f"{run.run_id}: {len(run.agents)} agents on {run.env_id}")
    output.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(output, dpi=dpi)
    pyplot.close(figure)
    return output


def main(argv: list[str] | None = None) -> int:
    """Plot one run of a training log; print where the PNG went."""
    parser = argparse.ArgumentParser(prog="python -m borg_game.plot", description=__doc__.splitlines()[0])
    parser.add_argument("log", type=Path, help="JSON-lines training log (make run: runs/training-log.jsonl)")
    parser.add_argument("--run-id", help="the run to plot (default: the newest in the log)")
    parser.add_argument("--output", type=Path, help="PNG to write (default: <log folder>/<run id>.png)")
    parser.add_argument("--smoothing", type=int, default=DEFAULT_SMOOTHING, help="episodes per moving mean")
    parser.add_argument("--dpi", type=int, default=100, help="resolution: the PNG is 12 x 8 inches")
    args = parser.parse_args(argv)
    if args.smoothing < 1:
        parser.error(f"--smoothing must be at least 1, got {args.smoothing}")
    try:
        run = run_curves(read_records(args.log), args.run_id)
        output = plot_run(run, args.output or args.log.parent / f"{run.run_id}.png", args.smoothing, args.dpi)
    except TrainingLogError as error:
        print(f"borg-plot: {error}", file=sys.stderr)
        return 2
    episodes = sum(len(curves.episode_returns) for curves in run.agents.values())
    print(f"{output}: run {run.run_id}, {len(run.agents)} agents, {episodes} episodes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
