"""The console view of `make run`: fixed agent statuses in, the lines a user reads out."""

from __future__ import annotations

from dataclasses import replace

from borg_game.console import BestEvaluation, best_evaluation, hive_seconds_left, render_progress
from borg_game.status import AgentPhase, AgentStatus

LEARNING = AgentStatus(
    "agent-0",
    phase=AgentPhase.LEARNING,
    step=22_500,
    learning_starts=1_000,
    total_steps=25_000,
    episodes=368,
    last_return=203.0,
    mean_return=108.8,
    steps_per_second=180.0,
    epsilon=0.04,
    replay_size=46_592,
    hive_pushed=46_592,
    last_eval=179.7,
    best_eval=500.0,
)
FILLING = AgentStatus(
    "agent-1",
    phase=AgentPhase.FILLING,
    step=400,
    learning_starts=1_000,
    total_steps=25_000,
    episodes=20,
    steps_per_second=1_200.0,
    epsilon=0.9,
    replay_size=800,
    hive_pushed=900,
)


def test_view_shows_windowed_speeds_phases_best_evaluation_and_counters_that_are_not_zero() -> None:
    troubled = replace(FILLING, dropped=3, corrupt_entries=2)
    view = render_progress([LEARNING, troubled], "local-1", 125.0, BestEvaluation(500.0, "agent-0"))
    assert view.splitlines() == [
        "[elapsed 0:02:05] local-1: 2 agents (1 filling, 1 learning) | 1,380 steps/s (last 30 s) | hive steps 22,900",
        "  best eval 500.0 (agent-0) | episodes 388 | mean100 return 108.8 | replay 46,592 held, 46,592 pushed",
        "  agent-0    learning     step    22,500 of 25,000    180 steps/s  ep   368  last  203.0  mean100  108.8  "
        "eval  179.7  best  500.0  eps 0.040",
        "  agent-1    filling 40%  step       400 of 25,000   1200 steps/s  ep    20  last      -  mean100      -  "
        "eval      -  best      -  eps 0.900  dropped 3  corrupt entries 2",
    ]


def test_time_left_is_the_slowest_agents_once_no_agent_fills() -> None:
    # agent-0: 2,500 steps left at 180/s (13.9 s); agent-1: 5,000 left at 100/s (50 s).
    slower = replace(FILLING, phase=AgentPhase.LEARNING, step=20_000, steps_per_second=100.0)
    view = render_progress([LEARNING, slower], "local-1", 3_725.0, None)
    assert view.splitlines()[0] == (
        "[elapsed 1:02:05, left ~0:00:50] local-1: 2 agents (2 learning) | 280 steps/s (last 30 s) | hive steps 42,500"
    )
    assert view.splitlines()[1].startswith("  best eval - |")


def test_time_left_is_unknown_while_an_agent_fills_or_has_no_speed() -> None:
    assert hive_seconds_left([LEARNING, FILLING]) is None
    assert hive_seconds_left([LEARNING, replace(LEARNING, agent_id="agent-1", steps_per_second=0.0)]) is None
    assert hive_seconds_left([]) is None


def test_hours_run_past_a_day() -> None:
    view = render_progress([replace(LEARNING, step=0, total_steps=5_000_000, steps_per_second=50.0)], "r", 0.0, None)
    assert view.startswith("[elapsed 0:00:00, left ~27:46:40] r: 1 agent (1 learning)")


def test_evaluating_and_playing_agents_are_named_so() -> None:
    evaluating = replace(LEARNING, phase=AgentPhase.EVALUATING)
    playing = replace(FILLING, agent_id="agent-2", phase=AgentPhase.PLAYING)
    lines = render_progress([evaluating, playing], "r", 0.0, None).splitlines()
    assert "(1 evaluating, 1 playing)" in lines[0]
    assert lines[2].startswith("  agent-0    evaluating   step")
    assert lines[3].startswith("  agent-2    playing      step")


def test_view_before_any_agent_reports_says_so() -> None:
    view = render_progress([], "local-1", 3.0, None)
    assert view == "[elapsed 0:00:03] local-1: waiting for the agents' first status"


def test_best_evaluation_is_the_highest_seen_and_outlives_the_agent_that_made_it() -> None:
    best = best_evaluation([LEARNING, FILLING], None)
    assert best == BestEvaluation(500.0, "agent-0")
    rival = replace(FILLING, best_eval=320.0)
    assert best_evaluation([rival], best) == BestEvaluation(500.0, "agent-0")  # agent-0 has finished
    assert best_evaluation([replace(rival, best_eval=501.0)], best) == BestEvaluation(501.0, "agent-1")
    assert best_evaluation([FILLING], None) is None
