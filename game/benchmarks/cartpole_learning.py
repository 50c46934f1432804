"""`make bench-learn`: does a CartPole-v1 hive learn faster than one agent, at equal own steps?

    python game/benchmarks/cartpole_learning.py [--agents 1,2,4] [--replay uniform,prioritized]
        [--exploration linear,ape_x] [--seeds 1,2,3,4,5] [--steps-per-agent 40000] [--parallel 1]

Every configuration is a hive size x replay (uniform or prioritized) x exploration (one
shared linear schedule, or Ape-X's fixed per-agent epsilons); Stable-Baselines3's DQN runs
beside them as the outside reference. The comparison is at equal OWN steps: every agent of
every hive plays the same number of steps (and so makes the same number of updates,
DESIGN.md), so a hive of 4 plays 4x the hive steps of a lone agent. Agents and SB3 get the
CartPole preset (ENV_PRESETS) as CONFIG_ variables, evaluate every --eval-interval of their
own steps (greedy), and report per configuration over the seeds: each agent's own steps to
its first evaluation >= 475, the same for the hive's best agent, the hive steps and seconds
to the hive's first evaluation >= 475, and the share of the evaluations after an agent's
first >= 475 that stay >= 475. The curves go to a PNG, the numbers to bench-results.json.

--parallel runs that many runs at once: fewer minutes, but their seconds then share the cores.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from hive_runs import (
    BenchmarkStoppedError,
    EvalPoint,
    child_process,
    eval_curve,
    first_reaching,
    read_log,
    run_hive,
    spread,
    stop_children_on_signal,
)
from machine import REPO_ROOT, RESULTS_FILE, describe_machine, write_results

from borg_game.ddqn import learning_rate_at
from borg_game.settings import ENV_PRESETS

SOLVED = 475.0
FIGURE_FILE = REPO_ROOT / "docs" / "figures" / "cartpole-hive-proof.png"

# The agent's CartPole preset (ENV_PRESETS), spelled out for SB3's DQN below, plus what the run fixes on top.
PRESET = ENV_PRESETS["CartPole-v1"]
# What --set may change: the learning settings SB3's DQN has too, so both stay configured alike.
TUNABLE = (
    "learning_rate",
    "learning_rate_end",
    "learning_rate_decay_steps",
    "batch_size",
    "learning_starts",
    "train_frequency",
    "gradient_steps",
    "target_update_interval",
    "tau",
    "epsilon_decay_steps",
    "epsilon_end",
    "mlp_hidden_sizes",
    "replay_capacity",
    "n_step",
)
REPLAY_CAPACITY = 100_000
GAMMA = 0.99
CARTPOLE: dict[str, object] = {
    "env_id": "CartPole-v1",
    **PRESET,
    "replay_capacity": REPLAY_CAPACITY,
    "gamma": GAMMA,
    "epsilon_start": 1.0,
    "tensorboard_dir": "",
    "checkpoint_interval": 1_000_000,
    "record_video": False,  # wall time to solve is compared with SB3's, which records none
}


@dataclass(frozen=True)
class Configuration:
    """One cell of the grid: a hive of `agents` with a replay and an exploration scheme."""

    agents: int
    replay: str  # uniform | prioritized
    exploration: str  # linear | ape_x

    @property
    def name(self) -> str:
        """The stable name of its results, e.g. 'hive-4-prioritized-ape_x'."""
        return f"hive-{self.agents}-{self.replay}-{self.exploration}"

    def settings(self) -> dict[str, object]:
        """The CONFIG_ keys that make this configuration, on top of the preset."""
        # the local hive sets hive_size, the N of ape_x, to its number of agents
        return {"prioritized_replay": self.replay == "prioritized", "exploration": self.exploration}


def parse_overrides(pairs: Sequence[str]) -> dict[str, Any]:
    """--set KEY=VALUE pairs as settings (VALUE read as JSON: 5e-4, [64, 64]); SystemExit on a key not TUNABLE."""
    overrides: dict[str, Any] = {}
    for pair in pairs:
        key, separator, text = pair.partition("=")
        if not separator or key not in TUNABLE:
            raise SystemExit(f"--set {pair!r}: expected KEY=VALUE with KEY one of {', '.join(TUNABLE)}")
        try:
            overrides[key] = json.loads(text)
        except json.JSONDecodeError:
            hint = "a number, or a list such as [64, 64]"
            raise SystemExit(f"--set {pair!r}: {text!r} is no JSON value ({hint})") from None
    return overrides


def run_configuration(config: Configuration, seed: int, args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    """One hive of the configuration, every agent playing --steps-per-agent of its own steps."""
    settings = {
        **CARTPOLE,
        **parse_overrides(args.set),
        **config.settings(),
        "seed": seed,
        "run_id": f"bench-{config.name}-{seed}",
        "total_steps": args.steps_per_agent,
        "priority_beta_steps": args.steps_per_agent,  # importance sampling reaches beta 1 at the budget's end
        "eval_interval": args.eval_interval,
        "eval_episodes": args.eval_episodes,
        "torch_threads": args.torch_threads,
    }
    run = run_hive(config.agents, settings, workdir, timeout=args.run_timeout, label=f"{config.name} seed {seed}")
    if run.returncode != 0:
        print(
            f"    {config.name} seed {seed}: hive exited with {run.returncode}; see {workdir / 'hive.out'}", flush=True
        )
    return summarize_run(config.name, seed, eval_curve(run.records, run.launched_at), run.wall_seconds)


def run_sb3(seed: int, args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    """SB3's DQN in a process of its own (so start-up counts as for the hive)."""
    log = workdir / "training_log.jsonl"
    workdir.mkdir(parents=True, exist_ok=True)
    launched_at = time.time()
    command = [sys.executable, __file__, "--sb3-worker", "--seed", str(seed), "--log", str(log)]
    command += ["--steps-per-agent", str(args.steps_per_agent), "--eval-interval", str(args.eval_interval)]
    command += ["--eval-episodes", str(args.eval_episodes), "--torch-threads", str(args.torch_threads)]
    command += [f"--set={pair}" for pair in args.set]
    output_path = workdir / "sb3.out"
    with (
        output_path.open("wb") as output,
        child_process(command, f"sb3 seed {seed}", stdout=output, stderr=subprocess.STDOUT) as process,
    ):
        try:
            process.wait(timeout=args.run_timeout)
        except subprocess.TimeoutExpired:
            print(f"    sb3 seed {seed}: stopped at --run-timeout ({args.run_timeout:.0f} s)", flush=True)
    if process.returncode != 0:
        tail = output_path.read_text(errors="replace")[-2000:]
        print(f"    sb3 seed {seed} exited with {process.returncode}:\n{tail}", flush=True)
    records = read_log(log)
    return summarize_run("sb3", seed, eval_curve(records, launched_at), time.time() - launched_at)


def sb3_worker(args: argparse.Namespace) -> int:
    """Train SB3's DQN with the CartPole preset, logging evaluations like an agent does."""
    import gymnasium as gym
    import torch
    from borg_common.timestamps import utc_timestamp
    from stable_baselines3 import DQN
    from stable_baselines3.common.callbacks import BaseCallback
    from stable_baselines3.common.evaluation import evaluate_policy

    torch.set_num_threads(args.torch_threads)

    class Evaluate(BaseCallback):
        def __init__(self, log: TextIO) -> None:
            super().__init__()
            self.eval_env = gym.make("CartPole-v1")
            self.log = log

        def _on_step(self) -> bool:
            if self.num_timesteps % args.eval_interval == 0:
                returns, _ = evaluate_policy(
                    self.model, self.eval_env, n_eval_episodes=args.eval_episodes, deterministic=True
                )
                assert isinstance(returns, float)  # a mean: return_episode_rewards is False
                record = {
                    "timestamp": utc_timestamp(),
                    "agent_id": "sb3",
                    "type": "eval",
                    "agent_step": self.num_timesteps,
                    "eval_return_mean": float(returns),
                }
                self.log.write(json.dumps(record) + "\n")
            return True

    agent_defaults = {"tau": 1.0, "n_step": 1, "learning_rate_end": 0.0, "learning_rate_decay_steps": 0}
    preset = {**agent_defaults, "replay_capacity": REPLAY_CAPACITY, **PRESET, **parse_overrides(args.set)}

    def learning_rate(progress_remaining: float) -> float:
        """The agents' learning rate at SB3's step (SB3 passes 1 - step / total_timesteps)."""
        step = round((1.0 - progress_remaining) * args.steps_per_agent)
        start, end = preset["learning_rate"], preset["learning_rate_end"]
        return float(learning_rate_at(step, start, end, preset["learning_rate_decay_steps"]))

    model = DQN(
        "MlpPolicy",
        gym.make("CartPole-v1"),
        learning_rate=learning_rate,
        batch_size=preset["batch_size"],
        buffer_size=preset["replay_capacity"],
        learning_starts=preset["learning_starts"],
        gamma=GAMMA,
        tau=preset["tau"],
        target_update_interval=preset["target_update_interval"],
        train_freq=preset["train_frequency"],
        gradient_steps=preset["gradient_steps"],
        n_steps=preset["n_step"],
        # the same decay steps at any budget, as the agents have
        exploration_fraction=min(1.0, preset["epsilon_decay_steps"] / args.steps_per_agent),
        exploration_final_eps=preset["epsilon_end"],
        policy_kwargs={"net_arch": list(preset["mlp_hidden_sizes"])},
        seed=args.seed,
        device="cpu",
    )
    with Path(args.log).open("a", encoding="utf-8", buffering=1) as log:
        model.learn(total_timesteps=args.steps_per_agent, callback=Evaluate(log))
    return 0


def summarize_run(config: str, seed: int, curve: list[EvalPoint], wall_seconds: float) -> dict[str, Any]:
    """Per agent: own steps to its first evaluation >= 475 and what its later ones did; for the hive: when."""
    agents = sorted({point.agent_id for point in curve})
    own_steps: dict[str, int | None] = {}
    later_evaluations = later_solved = 0
    for agent in agents:
        mine = [point for point in curve if point.agent_id == agent]
        solved = first_reaching(mine, SOLVED)
        own_steps[agent] = solved.agent_step if solved else None
        if solved is not None:
            later = [point.mean_return for point in mine if point.agent_step > solved.agent_step]
            later_evaluations += len(later)
            later_solved += sum(value >= SOLVED for value in later)
    reached = [steps for steps in own_steps.values() if steps is not None]
    hive_solved = first_reaching(curve, SOLVED)
    return {
        "config": config,
        "seed": seed,
        "agent_own_steps_to_475": own_steps,
        "best_agent_own_steps_to_475": min(reached) if reached else None,
        "hive_steps_to_475": hive_solved.hive_steps if hive_solved else None,
        "seconds_to_475": hive_solved.seconds if hive_solved else None,
        "later_evaluations": later_evaluations,
        "later_evaluations_at_475": later_solved,
        "last_evaluations": {agent: [p.mean_return for p in curve if p.agent_id == agent][-1] for agent in agents},
        "wall_seconds": wall_seconds,
        "curve": [
            [point.agent_id, point.agent_step, round(point.hive_steps), round(point.seconds, 1), point.mean_return]
            for point in curve
        ],
    }


def own_steps_to_475_held(run: dict[str, Any]) -> dict[str, int | None]:
    """Per agent of a run: own steps to the first evaluation >= 475 whose next one is >= 475 too.

    Stricter than the first evaluation >= 475: an early greedy evaluation of a barely trained
    CartPole network sometimes balances for 500 steps and is followed by 100-250 for good; two
    in a row tell a learned policy from such a touch.
    """
    scores: dict[str, list[tuple[int, float]]] = {}
    for agent, own_steps, _hive_steps, _seconds, mean_return in run["curve"]:
        scores.setdefault(agent, []).append((own_steps, mean_return))
    held: dict[str, int | None] = {}
    for agent, points in scores.items():
        points.sort()
        held[agent] = next(
            (steps for (steps, score), (_, after) in itertools.pairwise(points) if score >= SOLVED and after >= SOLVED),
            None,
        )
    return held


def summarize_configs(runs: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Per configuration, over its seeds (and agents): median [min, max] of the steps and seconds to 475."""
    summary: dict[str, Any] = {}
    for config in dict.fromkeys(run["config"] for run in runs):
        mine = [run for run in runs if run["config"] == config]
        later = sum(run["later_evaluations"] for run in mine)
        held = [own_steps_to_475_held(run) for run in mine]
        summary[config] = {
            "runs": len(mine),
            "agent_own_steps_to_475": spread(
                [steps for run in mine for steps in run["agent_own_steps_to_475"].values()]
            ),
            "best_agent_own_steps_to_475": spread([run["best_agent_own_steps_to_475"] for run in mine]),
            "agent_own_steps_to_475_held": spread([steps for agents in held for steps in agents.values()]),
            "best_agent_own_steps_to_475_held": spread(
                [min((steps for steps in agents.values() if steps is not None), default=None) for agents in held]
            ),
            "hive_steps_to_475": spread([run["hive_steps_to_475"] for run in mine]),
            "seconds_to_475": spread([run["seconds_to_475"] for run in mine]),
            "later_evaluations": later,
            "later_evaluations_at_475_share": (
                sum(run["later_evaluations_at_475"] for run in mine) / later if later else None
            ),
        }
    return summary


def judge_goal(summary: dict[str, Any]) -> dict[str, Any]:
    """The issue's goal: the best hive of 4 reaches 475 in < half a lone agent's own steps and stays (>= 90%).

    The best configuration of each side is the one whose best agent held 475 soonest (two
    evaluations in a row, the median over seeds), then the one that touched it soonest, then
    the one that stayed there most: ranked by the first touch alone, a configuration whose
    agents balanced for 500 steps at their first evaluation by luck and never again would win.
    Both ratios are given for that one pair.
    """

    def median_steps(config: str, measure: str) -> float:
        median = summary[config][measure]["median"]
        return float("inf") if median is None else float(median)

    def rank(config: str) -> tuple[float, float, float]:
        return (
            median_steps(config, "best_agent_own_steps_to_475_held"),
            median_steps(config, "best_agent_own_steps_to_475"),
            -(summary[config]["later_evaluations_at_475_share"] or 0.0),
        )

    lone = [config for config in summary if config.startswith("hive-1-")]
    hives = [config for config in summary if config.startswith("hive-4-")]
    if not lone or not hives:
        return {"judged": False, "why": "needs hives of 1 and of 4 in the same run"}
    best_lone, best_hive = min(lone, key=rank), min(hives, key=rank)

    def ratio_of(measure: str) -> float | None:
        hive_steps, lone_steps = median_steps(best_hive, measure), median_steps(best_lone, measure)
        return hive_steps / lone_steps if lone_steps != float("inf") and hive_steps != float("inf") else None

    ratio = ratio_of("best_agent_own_steps_to_475")
    share = summary[best_hive]["later_evaluations_at_475_share"]
    return {
        "judged": True,
        "best_lone_config": best_lone,
        "best_hive_4_config": best_hive,
        "own_steps_ratio_hive_4_to_lone": ratio,
        # The same pair, with two evaluations >= 475 in a row (own_steps_to_475_held).
        "own_steps_ratio_hive_4_to_lone_held": ratio_of("best_agent_own_steps_to_475_held"),
        "hive_4_later_evaluations_at_475_share": share,
        "met": ratio is not None and ratio < 0.5 and share is not None and share >= 0.9,
    }


def print_summary(summary: dict[str, Any], goal: dict[str, Any]) -> None:
    """The table: own steps per agent and of the best agent, hive steps, seconds, share staying solved."""
    print(
        f"\n{'config':<26} {'agent own steps to 475':<30} {'best agent own steps':<30} "
        f"{'hive steps':<30} {'seconds':<18} {'later >= 475':<14} best agent, 2 in a row"
    )
    for config, row in summary.items():
        cells = [
            _spread(row["agent_own_steps_to_475"], ",.0f"),
            _spread(row["best_agent_own_steps_to_475"], ",.0f"),
            _spread(row["hive_steps_to_475"], ",.0f"),
        ]
        share = f"{_show(row['later_evaluations_at_475_share'], '.0%')} of {row['later_evaluations']}"
        print(
            f"{config:<26} {cells[0]:<30} {cells[1]:<30} {cells[2]:<30} "
            f"{_spread(row['seconds_to_475'], '.0f'):<18} {share:<14} "
            f"{_spread(row['best_agent_own_steps_to_475_held'], ',.0f')}"
        )
    if goal["judged"]:
        print(
            f"\ngoal: best hive of 4 ({goal['best_hive_4_config']}) / best lone agent ({goal['best_lone_config']}) "
            f"median own steps to 475 = {_show(goal['own_steps_ratio_hive_4_to_lone'], '.2f')} (goal < 0.5); "
            f"later evaluations >= 475: {_show(goal['hive_4_later_evaluations_at_475_share'], '.0%')} (goal >= 90%): "
            f"{'met' if goal['met'] else 'NOT met'}"
        )
        print(
            "the same with two evaluations >= 475 in a row: "
            f"{_show(goal['own_steps_ratio_hive_4_to_lone_held'], '.2f')}"
        )


def plot_curves(runs: Sequence[dict[str, Any]], path: Path) -> None:
    """Evaluations against own steps (left) and hive steps (right), one row per configuration."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    configs = list(dict.fromkeys(run["config"] for run in runs))
    seeds = sorted({run["seed"] for run in runs})
    colors = plt.get_cmap("tab10")
    figure, axes = plt.subplots(len(configs), 2, figsize=(12, 2.4 * len(configs)), sharey=True, squeeze=False)
    for row, config in enumerate(configs):
        for run in (run for run in runs if run["config"] == config):
            for agent in dict.fromkeys(point[0] for point in run["curve"]):
                points = [point for point in run["curve"] if point[0] == agent]
                for column, index in ((0, 1), (1, 2)):
                    axes[row][column].plot(
                        [point[index] for point in points],
                        [point[4] for point in points],
                        color=colors(seeds.index(run["seed"]) % 10),
                        linewidth=0.8,
                        alpha=0.7,
                        label=f"seed {run['seed']}" if column == 0 and agent == run["curve"][0][0] else None,
                    )
        for column, label in ((0, "own steps of the agent"), (1, "hive steps")):
            axis = axes[row][column]
            axis.axhline(SOLVED, color="gray", linestyle="--", linewidth=1)
            axis.set_title(f"{config}: evaluation by {label}", fontsize="small")
            axis.grid(alpha=0.3)
        axes[row][0].set_ylabel("eval return")
    axes[0][0].legend(loc="lower right", fontsize="x-small")
    for column, label in ((0, "own steps of the agent"), (1, "hive steps")):
        axes[-1][column].set_xlabel(label)
    figure.suptitle("CartPole-v1: every agent's greedy evaluations (one color per seed; dashed: 475)")
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=80)
    plt.close(figure)


class LoadSampler:
    """The 1-minute load average every `interval` seconds while the benchmark runs (the machine is shared)."""

    def __init__(self, interval: float = 30.0) -> None:
        self.interval = interval
        self.samples: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def __enter__(self) -> LoadSampler:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()

    def _sample(self) -> None:
        while True:
            self.samples.append(round(os.getloadavg()[0], 2))
            if self._stop.wait(self.interval):
                return

    def summary(self) -> dict[str, float]:
        """Min, median and max of the samples."""
        return {
            "min": min(self.samples),
            "median": statistics.median(self.samples),
            "max": max(self.samples),
        }


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The grid, the seeds and the own-step budget."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--agents", default="1,2,4", help="hive sizes, comma-separated")
    parser.add_argument("--replay", default="uniform,prioritized", help="replay kinds: uniform, prioritized")
    parser.add_argument("--exploration", default="linear,ape_x", help="exploration schemes: linear, ape_x")
    parser.add_argument("--seeds", default="1,2,3,4,5", help="seeds, comma-separated")
    parser.add_argument("--steps-per-agent", type=int, default=40_000, help="own steps of every agent and of SB3")
    parser.add_argument("--eval-interval", type=int, default=2_000, help="own steps between evaluations")
    parser.add_argument("--eval-episodes", type=int, default=5, help="greedy episodes per evaluation")
    parser.add_argument("--torch-threads", type=int, default=1, help="torch threads per agent and for SB3")
    parser.add_argument("--parallel", type=int, default=1, help="runs at once (their seconds then share the cores)")
    parser.add_argument("--no-sb3", action="store_true", help="skip Stable-Baselines3")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help=f"change a setting of the preset for the agents and SB3 alike (repeatable): {', '.join(TUNABLE)}",
    )
    parser.add_argument("--run-timeout", type=float, default=3600.0, help="seconds before a run is stopped")
    parser.add_argument("--output", type=Path, default=RESULTS_FILE)
    parser.add_argument("--figure", type=Path, default=FIGURE_FILE, help="PNG of the curves")
    parser.add_argument(
        "--runs-file",
        type=Path,
        default=REPO_ROOT / "bench-learn-runs.jsonl",
        help="each finished run of this benchmark goes here (JSON lines), so a stopped one keeps what it ran",
    )
    parser.add_argument(
        "--summarize-only",
        action="store_true",
        help="run nothing: summarize the runs of --runs-file (the table, the PNG, bench-results.json)",
    )
    parser.add_argument("--sb3-worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--seed", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--log", default="", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def configurations(args: argparse.Namespace) -> list[Configuration]:
    """The grid the flags ask for; an error a person can act on for an unknown replay or scheme."""
    replays = args.replay.split(",")
    schemes = args.exploration.split(",")
    for flag, values, allowed in (
        ("--replay", replays, ("uniform", "prioritized")),
        ("--exploration", schemes, ("linear", "ape_x")),
    ):
        unknown = [value for value in values if value not in allowed]
        if unknown:
            raise SystemExit(f"{flag}: unknown {unknown}; expected some of {', '.join(allowed)}")
    sizes = [int(agents) for agents in args.agents.split(",")]
    return [Configuration(agents, replay, scheme) for agents in sizes for replay in replays for scheme in schemes]


def report(runs: list[dict[str, Any]], args: argparse.Namespace, extra: dict[str, Any]) -> None:
    """The summary table, the goal's verdict, bench-results.json and the PNG, from finished runs."""
    runs.sort(
        key=lambda run: (
            run["config"] == "sb3",
            int(run["config"].split("-")[1]) if run["config"] != "sb3" else 0,
            run["config"],
            run["seed"],
        )
    )
    summary = summarize_configs(runs)
    goal = judge_goal(summary)
    print_summary(summary, goal)
    results = {
        "cartpole": summary,
        "cartpole_goal": goal,
        "cartpole_runs": runs,
        "steps_per_agent": sorted({run["steps_per_agent"] for run in runs}),
        "preset_overrides": sorted({json.dumps(run.get("preset_overrides", {}), sort_keys=True) for run in runs}),
        "seeds": sorted({run["seed"] for run in runs}),
        **extra,
    }
    write_results("cartpole_learning", results, args.output)
    plot_curves(runs, args.figure)
    print(f"\nresults merged into {args.output}; curves in {args.figure}")


def keep_earlier_runs(runs_file: Path) -> None:
    """Move the runs of an earlier invocation aside (`<name>.<time>.jsonl`), never overwrite them."""
    if not runs_file.exists() or not runs_file.read_text().strip():
        return
    stamp = time.strftime("%Y%m%dT%H%M%S", time.localtime(runs_file.stat().st_mtime))
    kept = runs_file.with_name(f"{runs_file.stem}.{stamp}{runs_file.suffix}")
    runs_file.rename(kept)
    print(f"the runs of the earlier invocation in {runs_file} are kept in {kept}", flush=True)


def main(argv: list[str] | None = None) -> int:
    """Run every configuration (and SB3) for every seed; print and save the summary, the table and the PNG."""
    args = parse_args(argv)
    if args.sb3_worker:
        return sb3_worker(args)
    if args.summarize_only:
        report([json.loads(line) for line in args.runs_file.read_text().splitlines() if line], args, {})
        return 0
    seeds = [int(seed) for seed in args.seeds.split(",")]
    overrides = parse_overrides(args.set)  # a bad --set stops here, before any run
    grid: list[Configuration | None] = [*configurations(args), *([] if args.no_sb3 else [None])]
    machine = describe_machine()
    print(
        f"{machine['cpu_model']}, {machine['cpu_cores']} cores, load {machine['load_average_1m']}; "
        f"{len(grid)} configurations x {len(seeds)} seeds, {args.steps_per_agent:,} own steps per agent"
        + (f", preset changed: {overrides}" if overrides else ""),
        flush=True,
    )
    jobs = [(config, seed) for seed in seeds for config in grid]  # seeds outermost: a busy spell hits every config
    started = time.time()
    lock = threading.Lock()
    keep_earlier_runs(args.runs_file)
    args.runs_file.write_text("")  # this benchmark's runs only
    stop_children_on_signal()

    with tempfile.TemporaryDirectory(prefix="borg-bench-learn-") as scratch, LoadSampler() as load:

        def run_job(job: tuple[Configuration | None, int]) -> dict[str, Any]:
            config, seed = job
            name = config.name if config else "sb3"
            workdir = Path(scratch) / f"{name}-seed{seed}"
            run = run_sb3(seed, args, workdir) if config is None else run_configuration(config, seed, args, workdir)
            print(
                f"  [{time.time() - started:5.0f}s] {name} seed {seed}: own steps to 475 "
                f"{run['agent_own_steps_to_475']}, hive steps {_show(run['hive_steps_to_475'], ',.0f')}, "
                f"{_show(run['seconds_to_475'], '.0f')} s; later >= 475: {run['later_evaluations_at_475']}/"
                f"{run['later_evaluations']}; run {run['wall_seconds']:.0f} s, load {os.getloadavg()[0]:.1f}",
                flush=True,
            )
            run["steps_per_agent"] = args.steps_per_agent
            run["preset_overrides"] = overrides
            with lock, args.runs_file.open("a", encoding="utf-8") as runs_file:
                runs_file.write(json.dumps(run) + "\n")
            return run

        try:
            with ThreadPoolExecutor(max_workers=max(1, args.parallel)) as pool:
                runs = list(pool.map(run_job, jobs))
        except BenchmarkStoppedError:
            finished = len(args.runs_file.read_text().splitlines())
            print(
                f"stopped: the {finished} runs that finished are in {args.runs_file} "
                f"(summarize them with --summarize-only --runs-file {args.runs_file})",
                file=sys.stderr,
            )
            return 130
    extra = {
        "parallel_runs": args.parallel,
        "bench_learn_seconds": time.time() - started,
        "load_average_1m_during": load.summary(),
        "machine": machine,
    }
    report(runs, args, extra)
    return 0


def _show(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def _spread(values: dict[str, Any], spec: str) -> str:
    if values["median"] is None and values["min"] is None:
        return f"- ({values['reached']}/{values['runs']})"
    return (
        f"{_show(values['median'], spec)} [{_show(values['min'], spec)}, {_show(values['max'], spec)}] "
        f"({values['reached']}/{values['runs']})"
    )


if __name__ == "__main__":
    sys.exit(main())
