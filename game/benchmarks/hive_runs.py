"""Running a local hive (`python -m borg_game.hive`) for a learning benchmark, and reading its log.

The hive runs exactly as `make run` runs it, configured only through CONFIG_ variables; its
agents append every training-log record to one JSON-lines file (CONFIG_training_log_file),
from which the learning curve is read: each evaluation placed at the hive's total steps at
that moment (every agent's step count, interpolated from its own records' timestamps) and at
the seconds since the hive was launched (start-up included, as it is for any run).
"""

from __future__ import annotations

import json
import os
import signal
import statistics
import subprocess
import sys
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from borg_game.plot import summed_steps

Record = dict[str, Any]


@dataclass
class EvalPoint:
    """One evaluation of one agent, placed on the hive's clock."""

    agent_id: str
    agent_step: int
    hive_steps: float
    seconds: float
    mean_return: float


@dataclass
class HiveRun:
    """A finished run: its records, when it was launched, how it ended."""

    records: list[Record]
    launched_at: float
    wall_seconds: float
    returncode: int
    stopped_early: bool


class BenchmarkStoppedError(Exception):
    """The benchmark was told to stop (SIGTERM, Ctrl-C): the run in progress is not counted."""


# The child processes (hives, SB3 workers) running now, so that a stop reaches them: killed
# with the default SIGTERM handler, the benchmark would leave its hives playing on as orphans.
_children: set[subprocess.Popen[bytes]] = set()
_children_lock = threading.Lock()
_stop_requested = threading.Event()


def stop_children_on_signal() -> None:
    """From now on SIGTERM and SIGINT stop every child as Ctrl-C stops a hive (its agents write
    their final checkpoints), and no new one starts: `run_hive` raises BenchmarkStoppedError."""

    def stop(signum: int, _frame: object) -> None:
        if not _stop_requested.is_set():
            print(f"\n{signal.Signals(signum).name}: stopping the runs in progress", file=sys.stderr, flush=True)
        _stop_requested.set()
        with _children_lock:
            for child in _children:
                if child.poll() is None:
                    child.send_signal(signal.SIGINT)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)


@contextmanager
def child_process(command: Sequence[str], label: str, **popen: Any) -> Iterator[subprocess.Popen[bytes]]:
    """A child process that a stop reaches; stopped (SIGINT, then SIGKILL) if still running at the end.

    Raises BenchmarkStoppedError, before starting it or after it ended, once a stop was asked for.
    """
    if _stop_requested.is_set():
        raise BenchmarkStoppedError(f"{label}: not started")
    process = subprocess.Popen(command, **popen)
    with _children_lock:
        _children.add(process)
    try:
        yield process
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(timeout=120)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        with _children_lock:
            _children.discard(process)
    if _stop_requested.is_set():
        raise BenchmarkStoppedError(f"{label}: stopped before its end")


def config_environment(settings: Mapping[str, object]) -> dict[str, str]:
    """This process's environment without its CONFIG_ keys, plus `settings` as CONFIG_ keys."""
    environment = {key: value for key, value in os.environ.items() if not key.upper().startswith("CONFIG_")}
    for key, value in settings.items():
        environment[f"CONFIG_{key}"] = str(value).lower() if isinstance(value, bool) else str(value)
    environment["PYTHONUNBUFFERED"] = "1"
    return environment


def read_log(path: Path) -> list[Record]:
    """The records of a JSON-lines training log (a partly written last line is skipped)."""
    if not path.exists():
        return []
    records = []
    for line in path.read_text().splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return records


def epoch_seconds(timestamp: str) -> float:
    """An ISO 8601 record timestamp ('...Z') as seconds since the epoch."""
    return datetime.fromisoformat(timestamp.replace("Z", "+00:00")).timestamp()


def progress_line(records: Sequence[Record], seconds: float, budget: int) -> str:
    """How far a running hive is: hive steps of the budget, episodes, the best evaluation so far."""
    latest: dict[str, int] = {}
    for record in records:
        if "agent_step" in record:
            latest[str(record["agent_id"])] = int(record["agent_step"])
    episodes = sum(1 for record in records if record.get("type") == "episode")
    evals = [float(record["eval_return_mean"]) for record in records if record.get("type") == "eval"]
    best = f"{max(evals):g}" if evals else "-"
    steps = sum(latest.values())
    return f"[{seconds:5.0f}s] hive steps {steps:,} of {budget:,}, {episodes:,} episodes, best eval {best}"


def run_hive(
    agents: int,
    settings: Mapping[str, object],
    workdir: Path,
    timeout: float,
    stop_when: Callable[[list[Record]], bool] | None = None,
    poll_seconds: float = 5.0,
    progress_seconds: float = 30.0,
    label: str = "",
) -> HiveRun:
    """Run `python -m borg_game.hive` in `workdir` until done, `stop_when(records)` or `timeout`.

    Prints a progress line every `progress_seconds`, starting with `label` (to tell runs apart).
    A stop is a SIGINT, as Ctrl-C would send: the agents write final checkpoints and exit.
    """
    workdir.mkdir(parents=True, exist_ok=True)
    log_path = workdir / "training_log.jsonl"
    environment = config_environment({**settings, "training_log_file": log_path})
    command = [sys.executable, "-m", "borg_game.hive", "--agents", str(agents), "--progress-interval", "30"]
    launched_at = time.time()
    stopped_early = False
    with (
        (workdir / "hive.out").open("wb") as output,
        child_process(command, label, cwd=workdir, env=environment, stdout=output, stderr=subprocess.STDOUT) as process,
    ):
        last_progress = launched_at
        budget = agents * int(str(settings.get("total_steps", 0)))
        while process.poll() is None:
            time.sleep(poll_seconds)
            records = read_log(log_path)
            if time.time() - last_progress >= progress_seconds:
                last_progress = time.time()
                line = progress_line(records, last_progress - launched_at, budget)
                print(f"      {label}{' ' if label else ''}{line}", flush=True)
            if time.time() - launched_at > timeout or (stop_when is not None and stop_when(records)):
                stopped_early = True
                process.send_signal(signal.SIGINT)
                process.wait(timeout=120)
    return HiveRun(read_log(log_path), launched_at, time.time() - launched_at, process.returncode, stopped_early)


def eval_curve(records: Sequence[Record], launched_at: float) -> list[EvalPoint]:
    """Every evaluation, at the hive's total steps and the seconds since launch, in time order."""
    progress: dict[str, list[tuple[float, int]]] = defaultdict(list)
    for record in records:
        if "agent_step" in record:
            moment = epoch_seconds(str(record["timestamp"]))
            progress[str(record["agent_id"])].append((moment, int(record["agent_step"])))
    timelines = []
    for agent_points in progress.values():
        ordered = sorted(agent_points)
        timelines.append(([moment for moment, _ in ordered], [step for _, step in ordered]))
    points = []
    for record in records:
        if record.get("type") != "eval":
            continue
        moment = epoch_seconds(str(record["timestamp"]))
        points.append(
            EvalPoint(
                agent_id=str(record["agent_id"]),
                agent_step=int(record["agent_step"]),
                hive_steps=float(summed_steps(timelines, [moment])[0]),
                seconds=moment - launched_at,
                mean_return=float(record["eval_return_mean"]),
            )
        )
    return sorted(points, key=lambda point: point.seconds)


def first_reaching(curve: Sequence[EvalPoint], threshold: float) -> EvalPoint | None:
    """The earliest evaluation whose mean return reaches `threshold`."""
    return next((point for point in curve if point.mean_return >= threshold), None)


def spread(values: Sequence[float | None]) -> dict[str, float | int | None]:
    """Median over every run (one that never got there counts as infinitely late), min and max.

    The median is None when half the runs or more never got there.
    """
    reached = sorted(value for value in values if value is not None)
    ordered = reached + [float("inf")] * (len(values) - len(reached))
    median = statistics.median(ordered) if ordered else None
    return {
        "runs": len(values),
        "reached": len(reached),
        "median": median if median is not None and median != float("inf") else None,
        "min": reached[0] if reached else None,
        "max": reached[-1] if reached else None,
    }
