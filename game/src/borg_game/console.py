"""`make run`'s console view of the hive: pure functions from agents' statuses to lines.

Two hive lines (time, phases, speed, steps; best evaluation, returns, replay memory), then one
line per agent. Speeds are each agent's steps/s over the last `RATE_WINDOW_SECONDS`, summed
for the hive; the time left is the slowest agent's, at that speed.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from borg_game.status import AgentPhase, AgentStatus
from borg_game.step_rate import RATE_WINDOW_SECONDS


@dataclass(frozen=True)
class BestEvaluation:
    """The hive's best evaluation score and the agent that made it."""

    score: float
    agent_id: str


def best_evaluation(statuses: Sequence[AgentStatus], earlier: BestEvaluation | None) -> BestEvaluation | None:
    """The best of `earlier` and the statuses' best evaluations (an agent that finished keeps its record)."""
    best = earlier
    for status in statuses:
        if status.best_eval is not None and (best is None or status.best_eval > best.score):
            best = BestEvaluation(status.best_eval, status.agent_id)
    return best


def duration(seconds: float) -> str:
    """Seconds as H:MM:SS, hours unbounded (a Pong run takes days)."""
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02}:{secs:02}"


def seconds_left(status: AgentStatus) -> float | None:
    """Time until the agent reaches total_steps at its current speed.

    None while it has no speed, and while it fills the replay memory: it plays far faster
    then than once it learns.
    """
    if status.steps_per_second <= 0 or status.phase is AgentPhase.FILLING:
        return None
    return max(0, status.total_steps - status.step) / status.steps_per_second


def hive_seconds_left(statuses: Sequence[AgentStatus]) -> float | None:
    """Time until the last agent is done: None unless every agent's time left is known."""
    estimates = [seconds_left(status) for status in statuses]
    if not estimates or None in estimates:
        return None
    return max(estimate for estimate in estimates if estimate is not None)


def phase_label(status: AgentStatus) -> str:
    """The agent's phase; while filling, how far it is towards learning_starts."""
    if status.phase is AgentPhase.FILLING and status.learning_starts > 0:
        return f"filling {min(99, math.floor(100 * status.step / status.learning_starts))}%"
    return str(status.phase)


def hive_phases(statuses: Sequence[AgentStatus]) -> str:
    """How many agents are in each phase, as `2 learning, 1 evaluating`."""
    counts = Counter(status.phase for status in statuses)
    return ", ".join(f"{counts[phase]} {phase}" for phase in AgentPhase if counts[phase])


def problems(dropped: int, push_errors: int, corrupt_entries: int) -> str:
    """The replay memory's trouble counters that are not zero, as `  dropped 3  push errors 1`."""
    counters = {"dropped": dropped, "push errors": push_errors, "corrupt entries": corrupt_entries}
    return "".join(f"  {name} {count:,}" for name, count in counters.items() if count)


def _score(value: float | None, spec: str = ".1f") -> str:
    return "-" if value is None else format(value, spec)


def render_progress(
    statuses: Sequence[AgentStatus], run_id: str, elapsed_seconds: float, best: BestEvaluation | None
) -> str:
    """The console view of the hive now: two hive lines, then one line per agent."""
    left = hive_seconds_left(statuses)
    clock = f"[elapsed {duration(elapsed_seconds)}" + (f", left ~{duration(left)}]" if left is not None else "]")
    if not statuses:
        return f"{clock} {run_id}: waiting for the agents' first status"
    hive_speed = sum(status.steps_per_second for status in statuses)
    hive_steps = sum(status.step for status in statuses)
    episodes = sum(status.episodes for status in statuses)
    means = [status.mean_return for status in statuses if status.mean_return is not None]
    replay = max(status.replay_size for status in statuses)
    pushed = max(status.hive_pushed for status in statuses)
    best_text = f"{best.score:.1f} ({best.agent_id})" if best is not None else "-"
    lines = [
        f"{clock} {run_id}: {len(statuses)} agent{'s' if len(statuses) > 1 else ''} ({hive_phases(statuses)}) | "
        f"{hive_speed:,.0f} steps/s (last {RATE_WINDOW_SECONDS:.0f} s) | hive steps {hive_steps:,}",
        f"  best eval {best_text} | episodes {episodes:,} | mean100 return "
        f"{_score(sum(means) / len(means) if means else None)} | replay {replay:,} held, {pushed:,} pushed",
    ]
    for status in statuses:
        lines.append(
            f"  {status.agent_id:<10} {phase_label(status):<12} step {status.step:>9,} of {status.total_steps:,}  "
            f"{status.steps_per_second:5.0f} steps/s  ep {status.episodes:>5,}  "
            f"last {_score(status.last_return):>6}  mean100 {_score(status.mean_return):>6}  "
            f"eval {_score(status.last_eval):>6}  best {_score(status.best_eval):>6}  eps {status.epsilon:.3f}"
            + problems(status.dropped, status.push_errors, status.corrupt_entries)
        )
    return "\n".join(lines)
