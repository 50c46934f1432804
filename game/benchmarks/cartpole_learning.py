"""`make bench-learn`: CartPole-v1 hives of 1, 2 and 4 agents against Stable-Baselines3's DQN.

    python game/benchmarks/cartpole_learning.py [--agents 1,2,4] [--seeds 1,2,3] [--budget 50000]

Same machine, same step budget (hive total), same hyperparameters: SB3's rl-zoo CartPole-v1
DQN (lr 2.3e-3, batch 64, buffer 100k, learning_starts 1000, gamma 0.99, target update every
10 steps, train_freq 256 with 128 gradient steps, epsilon to 0.04 over 16% of 50k steps,
net [256, 256]); every agent of a hive gets them as CONFIG_ variables. Each run is
evaluated every --eval-interval hive steps (10 greedy episodes; a hive's agents each evaluate
every eval-interval / agents of their own steps). Reported per configuration, over the
seeds: hive steps and seconds (since launch) to the first evaluation mean >= 475, median and
spread, and whether the runs stay solved (share of later evaluations >= 475).

Each run takes about a minute on 2 cores: 4 configurations x 3 seeds, about 10 minutes.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, TextIO

from hive_runs import EvalPoint, eval_curve, first_reaching, read_log, run_hive, spread
from machine import RESULTS_FILE, describe_machine, write_results

from borg_game.settings import ENV_PRESETS

SOLVED = 475.0

# SB3 rl-zoo's DQN hyperparameters for CartPole-v1: the agent's preset (ENV_PRESETS), spelled out
# for SB3's DQN below, plus what the run fixes on top.
PRESET = ENV_PRESETS["CartPole-v1"]
CARTPOLE: dict[str, object] = {
    "env_id": "CartPole-v1",
    **PRESET,
    "replay_capacity": 100_000,
    "gamma": 0.99,
    "epsilon_start": 1.0,
    "tensorboard_dir": "",
    "checkpoint_interval": 1_000_000,
}


def run_agents(agents: int, seed: int, args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    """One hive of `agents` agents sharing the budget; its curve and when it was solved."""
    settings = {
        **CARTPOLE,
        "seed": seed,
        "run_id": f"bench-cartpole-{agents}-{seed}",
        "total_steps": args.budget // agents,
        "eval_interval": max(1, args.eval_interval // agents),
        "torch_threads": args.torch_threads,
        "record_video": False,  # wall time to solve is compared with SB3's, which records none
    }
    run = run_hive(agents, settings, workdir, timeout=args.run_timeout)
    if run.returncode != 0:
        print(
            f"    hive exited with {run.returncode}; see {workdir / 'hive.out'}",
            file=sys.stderr,
        )
    return summarize(
        f"hive-{agents}",
        seed,
        eval_curve(run.records, run.launched_at),
        run.wall_seconds,
    )


def run_sb3(seed: int, args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    """SB3's DQN in a process of its own (so start-up counts as for the hive)."""
    log = workdir / "training_log.jsonl"
    workdir.mkdir(parents=True, exist_ok=True)
    launched_at = time.time()
    command = [
        sys.executable,
        __file__,
        "--sb3-worker",
        "--seed",
        str(seed),
        "--budget",
        str(args.budget),
    ]
    command += [
        "--eval-interval",
        str(args.eval_interval),
        "--torch-threads",
        str(args.torch_threads),
    ]
    command += ["--log", str(log)]
    completed = subprocess.run(command, capture_output=True, text=True, timeout=args.run_timeout, check=False)
    if completed.returncode != 0:
        print(
            f"    SB3 exited with {completed.returncode}:\n{completed.stderr[-2000:]}",
            file=sys.stderr,
        )
    records = read_log(log)
    return summarize("sb3", seed, eval_curve(records, launched_at), time.time() - launched_at)


def sb3_worker(args: argparse.Namespace) -> int:
    """Train SB3's DQN with rl-zoo's CartPole settings, logging evaluations like an agent does."""
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
                returns, _ = evaluate_policy(self.model, self.eval_env, n_eval_episodes=10, deterministic=True)
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

    model = DQN(
        "MlpPolicy",
        gym.make("CartPole-v1"),
        learning_rate=PRESET["learning_rate"],
        batch_size=PRESET["batch_size"],
        buffer_size=CARTPOLE["replay_capacity"],
        learning_starts=PRESET["learning_starts"],
        gamma=CARTPOLE["gamma"],
        target_update_interval=PRESET["target_update_interval"],
        train_freq=PRESET["train_frequency"],
        gradient_steps=PRESET["gradient_steps"],
        exploration_fraction=PRESET["epsilon_decay_steps"] / args.budget,  # the same decay steps at any budget
        exploration_final_eps=PRESET["epsilon_end"],
        policy_kwargs={"net_arch": list(PRESET["mlp_hidden_sizes"])},
        seed=args.seed,
        device="cpu",
    )
    with Path(args.log).open("a", encoding="utf-8", buffering=1) as log:
        model.learn(total_timesteps=args.budget, callback=Evaluate(log))
    return 0


def first_staying(curve: list[EvalPoint], threshold: float) -> EvalPoint | None:
    """The evaluation from which on every evaluation (of every agent) reaches `threshold`."""
    for index, point in enumerate(curve):
        if all(later.mean_return >= threshold for later in curve[index:]):
            return point
    return None


def summarize(name: str, seed: int, curve: list[EvalPoint], wall_seconds: float) -> dict[str, Any]:
    """When the run first reached 475, and whether it stayed there."""
    solved = first_reaching(curve, SOLVED)
    later = [point.mean_return for point in curve if solved is not None and point.seconds > solved.seconds]
    stable = first_staying(curve, SOLVED)
    return {
        "config": name,
        "seed": seed,
        "solved_hive_steps": solved.hive_steps if solved else None,
        "solved_seconds": solved.seconds if solved else None,
        "stable_hive_steps": stable.hive_steps if stable else None,
        "stable_seconds": stable.seconds if stable else None,
        "stays_solved_share": sum(value >= SOLVED for value in later) / len(later) if later else None,
        "last_eval": curve[-1].mean_return if curve else None,
        "evaluations": len(curve),
        "wall_seconds": wall_seconds,
        "curve": [[round(point.hive_steps), round(point.seconds, 1), point.mean_return] for point in curve],
    }


def summarize_configs(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Per configuration, over its seeds: first evaluation >= 475 and the one from which it stayed."""
    summary: dict[str, Any] = {}
    for milestone, label in (
        ("solved", "first evaluation >= 475"),
        ("stable", "every evaluation >= 475 from"),
    ):
        print(
            f"\n{label}:\n{'config':<8} {'runs':>5}  {'hive steps: median [min, max]':<34} seconds: median [min, max]"
        )
        for config in dict.fromkeys(run["config"] for run in runs):
            mine = [run for run in runs if run["config"] == config]
            steps = spread([run[f"{milestone}_hive_steps"] for run in mine])
            seconds = spread([run[f"{milestone}_seconds"] for run in mine])
            summary.setdefault(config, {})[f"{milestone}_hive_steps"] = steps
            summary[config][f"{milestone}_seconds"] = seconds
            print(
                f"{config:<8} {steps['reached']}/{steps['runs']:<3}  "
                f"{_show(steps['median'], ',.0f'):>8} [{_show(steps['min'], ',.0f')}, {_show(steps['max'], ',.0f')}]"
                f"{'':<12}{_show(seconds['median'], '.0f'):>5} [{_show(seconds['min'], '.0f')}, "
                f"{_show(seconds['max'], '.0f')}]"
            )
    return summary


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Budget, seeds and hive sizes."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--agents", default="1,2,4", help="hive sizes to run, comma-separated")
    parser.add_argument("--seeds", default="1,2,3", help="seeds, comma-separated")
    parser.add_argument("--budget", type=int, default=50_000, help="hive steps per run (rl-zoo: 50k)")
    parser.add_argument("--eval-interval", type=int, default=2500, help="hive steps between evaluations")
    parser.add_argument(
        "--torch-threads",
        type=int,
        default=1,
        help="torch threads per agent and for SB3",
    )
    parser.add_argument("--no-sb3", action="store_true", help="skip Stable-Baselines3")
    parser.add_argument(
        "--run-timeout",
        type=float,
        default=1800.0,
        help="seconds before a run is stopped",
    )
    parser.add_argument("--output", type=Path, default=RESULTS_FILE)
    parser.add_argument("--sb3-worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--seed", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--log", default="", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Run every configuration for every seed; print and save the summary."""
    args = parse_args(argv)
    if args.sb3_worker:
        return sb3_worker(args)
    seeds = [int(seed) for seed in args.seeds.split(",")]
    hive_sizes = [int(agents) for agents in args.agents.split(",")]
    machine = describe_machine()
    print(f"{machine['cpu_model']}, {machine['cpu_cores']} cores; budget {args.budget:,} hive steps, seeds {seeds}")
    runs: list[dict[str, Any]] = []
    started = time.time()
    with tempfile.TemporaryDirectory(prefix="borg-bench-learn-") as scratch:
        for seed in seeds:
            configs = [f"hive-{agents}" for agents in hive_sizes] + ([] if args.no_sb3 else ["sb3"])
            for config in configs:  # seeds outermost: a busy spell of the machine hits every configuration
                workdir = Path(scratch) / f"{config}-seed{seed}"
                if config == "sb3":
                    run = run_sb3(seed, args, workdir)
                else:
                    run = run_agents(int(config.split("-")[1]), seed, args, workdir)
                runs.append(run)
                print(
                    f"  {config:<7} seed {seed}: solved at {_show(run['solved_hive_steps'], ',.0f')} hive steps, "
                    f"{_show(run['solved_seconds'], '.0f')} s; stays solved {_show(run['stays_solved_share'], '.0%')}; "
                    f"last eval {_show(run['last_eval'], '.0f')}; run {run['wall_seconds']:.0f} s"
                )
    summary = summarize_configs(runs)
    results = {
        "cartpole": summary,
        "cartpole_runs": runs,
        "budget_hive_steps": args.budget,
        "seeds": seeds,
        "bench_learn_seconds": time.time() - started,
        "machine": machine,
    }
    write_results("cartpole_learning", results, args.output)
    print(f"\nresults merged into {args.output}")
    return 0


def _show(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


if __name__ == "__main__":
    sys.exit(main())
