"""`make bench-pong`: N agents on one GPU learn Pong to an evaluation mean of 18.

    python game/benchmarks/pong_learning.py --agents 4 [--hive-steps 1000000] [--minutes 30] [--set KEY=VALUE ...]

Runs the local hive (`python -m borg_game.hive`, as `make run` does) on ALE/Pong-v5 with the
agent's default settings plus any `--set` overrides (CONFIG_ keys without the prefix),
stops it at the first evaluation whose mean return reaches --target (or at --hive-steps, or
after --minutes) and reports: hive steps and wall-clock seconds (since launch) to the
target, the best evaluation, and the curve, as a PNG (evaluation mean and episode returns
against hive steps and against minutes) and as TensorBoard scalars of the hive
(`<workdir>/runs/hive`, step = hive steps) beside each agent's own TensorBoard run.
Evaluations are each agent's (CONFIG_eval_episodes episodes at CONFIG_eval_epsilon with
sticky actions CONFIG_repeat_action_probability, all three reported), every
--eval-interval hive steps (every eval-interval / agents steps of each agent).

On a CPU it runs too (device auto), only slowly: a smoke run with tiny settings is
    python game/benchmarks/pong_learning.py --agents 2 --hive-steps 2000 --eval-interval 1000 \\
        --set learning_starts=200 --set eval_episodes=1 --set replay_capacity=4000 --set train_log_interval=10
"""

from __future__ import annotations

import argparse
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

from hive_runs import (
    BenchmarkStoppedError,
    EvalPoint,
    HiveRun,
    Record,
    epoch_seconds,
    eval_curve,
    first_reaching,
    run_hive,
    stop_children_on_signal,
)
from machine import REPO_ROOT, RESULTS_FILE, describe_machine, write_results


def parse_overrides(pairs: list[str]) -> dict[str, str]:
    """`--set key=value` pairs as agent settings."""
    overrides = {}
    for pair in pairs:
        key, separator, value = pair.partition("=")
        if not separator or not key:
            raise SystemExit(f"--set expects KEY=VALUE (a CONFIG_ key without the prefix), got {pair!r}")
        overrides[key.removeprefix("CONFIG_").removeprefix("config_")] = value
    return overrides


def episode_points(run: HiveRun) -> list[tuple[float, float, float]]:
    """(hive steps, minutes, return) of every episode: the hive's push counter as the agent saw it."""
    episodes: list[tuple[float, float, float]] = []
    for record in run.records:
        if record.get("type") == "episode" and "hive_step" in record:
            minutes = (epoch_seconds(str(record["timestamp"])) - run.launched_at) / 60
            episodes.append((float(record["hive_step"]), minutes, float(record["episode_return"])))
    return episodes


def plot(curve: list[EvalPoint], episodes: list[tuple[float, float, float]], target: float, path: Path) -> None:
    """The learning curve as a PNG: against hive steps (left) and wall-clock minutes (right)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (by_steps, by_time) = plt.subplots(1, 2, figsize=(13, 4.5), sharey=True)
    for axis, episode_x, eval_x, label in (  # evaluations: one line per agent
        (by_steps, [episode[0] for episode in episodes], [point.hive_steps for point in curve], "hive steps"),
        (by_time, [episode[1] for episode in episodes], [point.seconds / 60 for point in curve], "minutes"),
    ):
        axis.scatter(episode_x, [episode[2] for episode in episodes], s=3, alpha=0.25, label="episode return")
        for agent in sorted({point.agent_id for point in curve}):
            mine = [index for index, point in enumerate(curve) if point.agent_id == agent]
            returns = [curve[index].mean_return for index in mine]
            axis.plot([eval_x[index] for index in mine], returns, "o-", label=f"{agent} evaluation")
        axis.axhline(target, color="gray", linestyle="--", linewidth=1, label=f"target {target:g}")
        axis.set_xlabel(label)
        axis.grid(alpha=0.3)
    by_steps.set_ylabel("Pong score")
    by_steps.legend(loc="lower right", fontsize="small")
    figure.suptitle("Borg-DQN hive on ALE/Pong-v5")
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def write_tensorboard(curve: list[EvalPoint], episodes: list[tuple[float, float, float]], folder: Path) -> None:
    """The hive's curve as TensorBoard scalars, step = hive steps."""
    from torch.utils.tensorboard import SummaryWriter

    writer = SummaryWriter(log_dir=str(folder))
    for point in curve:
        writer.add_scalar("hive/eval_return_mean", point.mean_return, round(point.hive_steps))
        writer.add_scalar("hive/eval_minutes", point.seconds / 60, round(point.hive_steps))
    for hive_steps, _, episode_return in episodes:
        writer.add_scalar("hive/episode_return", episode_return, round(hive_steps))
    writer.close()


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Hive size, budget and overrides."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--agents", type=int, default=4, help="agent processes sharing the GPU")
    parser.add_argument("--hive-steps", type=int, default=1_000_000, help="budget: hive steps (all agents)")
    parser.add_argument("--minutes", type=float, default=30.0, help="budget: wall-clock minutes")
    parser.add_argument("--target", type=float, default=18.0, help="evaluation mean that ends the run")
    parser.add_argument("--keep-going", action="store_true", help="do not stop at the target: use the budget")
    parser.add_argument("--eval-interval", type=int, default=100_000, help="hive steps between evaluations")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="agent setting (repeatable)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--workdir", type=Path, default=None, help="run folder (default runs/bench-pong-<time>)")
    parser.add_argument("--output", type=Path, default=RESULTS_FILE)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Run the hive to the target or the budget; report and plot."""
    args = parse_args(argv)
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    workdir = (args.workdir or REPO_ROOT / "runs" / f"bench-pong-{stamp}").resolve()
    settings: dict[str, object] = {
        "env_id": "ALE/Pong-v5",
        "run_id": f"bench-pong-{stamp}",
        "seed": args.seed,
        "total_steps": args.hive_steps // args.agents,
        "eval_interval": max(1, args.eval_interval // args.agents),
        "tensorboard_dir": "runs",
        **parse_overrides(args.set),
    }
    machine = describe_machine()
    print(
        f"{args.agents} agents on {machine['gpu'] or 'CPU (no GPU found)'}; budget {args.hive_steps:,} hive steps "
        f"or {args.minutes:g} min; target {args.target:g}; run folder {workdir}"
    )

    def reached(records: list[Record]) -> bool:
        return not args.keep_going and any(
            record.get("type") == "eval" and float(record["eval_return_mean"]) >= args.target for record in records
        )

    stop_children_on_signal()
    try:
        run = run_hive(args.agents, settings, workdir, timeout=args.minutes * 60, stop_when=reached, poll_seconds=10)
    except BenchmarkStoppedError:
        print(f"stopped: the hive's training log and checkpoints are in {workdir}", file=sys.stderr)
        return 130
    curve = eval_curve(run.records, run.launched_at)
    episodes = episode_points(run)
    solved = first_reaching(curve, args.target)
    evals = [record for record in run.records if record.get("type") == "eval"]
    plot_path = workdir / "pong-learning-curve.png"
    plot(curve, episodes, args.target, plot_path)
    write_tensorboard(curve, episodes, workdir / "runs" / "hive")
    played = max([0.0, *(point.hive_steps for point in curve), *(step for step, _, _ in episodes)])
    results: dict[str, Any] = {
        "pong_agents": args.agents,
        "pong_target": args.target,
        "pong_hive_steps_to_target": solved.hive_steps if solved else None,
        "pong_seconds_to_target": solved.seconds if solved else None,
        "pong_best_eval": max((point.mean_return for point in curve), default=None),
        "pong_hive_steps_played": played,
        "pong_wall_seconds": run.wall_seconds,
        "pong_eval_settings": {
            key: evals[0].get(key) for key in ("eval_epsilon", "repeat_action_probability", "eval_episodes")
        }
        if evals
        else None,
        "pong_settings": {key: str(value) for key, value in settings.items()},
        "pong_curve": [[round(point.hive_steps), round(point.seconds, 1), point.mean_return] for point in curve],
        "pong_plot": str(plot_path),
        "pong_hive_returncode": run.returncode,
        "machine": machine,
    }
    write_results("pong_learning", results, args.output)
    if solved:
        print(f"evaluation mean {solved.mean_return:g} >= {args.target:g} ", end="")
        print(f"at {solved.hive_steps:,.0f} hive steps, {solved.seconds / 60:.1f} min ({solved.agent_id})")
    else:
        print(f"target {args.target:g} not reached; best evaluation {results['pong_best_eval']}")
    print(f"curve: {plot_path}; TensorBoard: tensorboard --logdir {workdir / 'runs'}; results in {args.output}")
    return 0 if run.returncode == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
