"""`make bench-learn`'s verdict: which configurations it compares, and on what measure.

The benchmark program lives in benchmarks/ (it needs Stable-Baselines3 only when it runs SB3),
so it is loaded from its file; its summary and verdict are pure functions of finished runs.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
EVAL_INTERVAL = 2_000


@pytest.fixture
def bench(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    monkeypatch.syspath_prepend(str(BENCHMARKS))  # its own imports: hive_runs, machine
    spec = importlib.util.spec_from_file_location("cartpole_learning", BENCHMARKS / "cartpole_learning.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, module)  # its dataclasses look themselves up there
    spec.loader.exec_module(module)
    return module


def run(bench: ModuleType, config: str, seed: int, scores_by_agent: dict[str, list[float]]) -> dict[str, Any]:
    """A finished run whose agents evaluated `scores` every EVAL_INTERVAL of their own steps."""
    curve = [
        bench.EvalPoint(agent, EVAL_INTERVAL * (index + 1), 0.0, 0.0, score)
        for agent, scores in scores_by_agent.items()
        for index, score in enumerate(scores)
    ]
    curve.sort(key=lambda point: point.agent_step)
    result: dict[str, Any] = bench.summarize_run(config, seed, curve, 0.0)
    return result


FLUKE = [500.0, 150.0, 160.0, 140.0, 150.0, 170.0, 150.0, 160.0, 150.0, 140.0]  # 475 at 2,000, never again
NEVER = [20.0, 90.0, 150.0, 200.0, 150.0, 170.0, 150.0, 160.0, 150.0, 140.0]


def learns_at(own_steps: int) -> list[float]:
    """Below 475 until `own_steps`, then 500 to the end: held from `own_steps` on."""
    return [500.0 if EVAL_INTERVAL * (index + 1) >= own_steps else 200.0 for index in range(10)]


def test_a_first_evaluation_fluke_does_not_make_a_configuration_the_best(bench: ModuleType) -> None:
    runs = [
        # Lone agents: one configuration touches 475 by luck at its first evaluation in two of
        # three seeds and never again; the other learns at 16,000-20,000 and stays.
        run(bench, "hive-1-uniform-linear", 1, {"agent-0": FLUKE}),
        run(bench, "hive-1-uniform-linear", 2, {"agent-0": FLUKE}),
        run(bench, "hive-1-uniform-linear", 3, {"agent-0": NEVER}),
        run(bench, "hive-1-uniform-ape_x", 1, {"agent-0": learns_at(16_000)}),
        run(bench, "hive-1-uniform-ape_x", 2, {"agent-0": learns_at(18_000)}),
        run(bench, "hive-1-uniform-ape_x", 3, {"agent-0": learns_at(20_000)}),
        # Hives of 4 (two agents shown): the same fluke against a best agent that learns at 8,000.
        *[run(bench, "hive-4-uniform-linear", seed, {"agent-0": FLUKE, "agent-1": NEVER}) for seed in (1, 2, 3)],
        *[
            run(bench, "hive-4-uniform-ape_x", seed, {"agent-0": learns_at(8_000), "agent-1": NEVER})
            for seed in (1, 2, 3)
        ],
    ]
    summary = bench.summarize_configs(runs)
    # By the first touch alone, the flukes would be the best of each side (2,000 own steps).
    assert summary["hive-1-uniform-linear"]["best_agent_own_steps_to_475"]["median"] == 2_000
    assert summary["hive-4-uniform-linear"]["best_agent_own_steps_to_475"]["median"] == 2_000

    goal = bench.judge_goal(summary)

    assert (goal["best_lone_config"], goal["best_hive_4_config"]) == ("hive-1-uniform-ape_x", "hive-4-uniform-ape_x")
    assert goal["own_steps_ratio_hive_4_to_lone"] == pytest.approx(8_000 / 18_000)
    assert goal["own_steps_ratio_hive_4_to_lone_held"] == pytest.approx(8_000 / 18_000)
    assert goal["hive_4_later_evaluations_at_475_share"] == 1.0
    assert goal["met"] is True


def test_the_held_ratio_is_undefined_when_no_lone_configuration_held_475(bench: ModuleType) -> None:
    runs = [
        *[run(bench, "hive-1-uniform-linear", seed, {"agent-0": FLUKE}) for seed in (1, 2, 3)],
        *[run(bench, "hive-4-uniform-ape_x", seed, {"agent-0": learns_at(8_000)}) for seed in (1, 2, 3)],
    ]
    goal = bench.judge_goal(bench.summarize_configs(runs))

    # The first touch gives a ratio (8,000 against the fluke's 2,000), which is no win.
    assert goal["own_steps_ratio_hive_4_to_lone"] == pytest.approx(4.0)
    assert goal["own_steps_ratio_hive_4_to_lone_held"] is None
    assert goal["met"] is False


def test_the_verdict_needs_a_lone_agent_and_a_hive_of_4(bench: ModuleType) -> None:
    runs = [run(bench, "hive-2-uniform-ape_x", 1, {"agent-0": learns_at(8_000)})]

    assert bench.judge_goal(bench.summarize_configs(runs))["judged"] is False
