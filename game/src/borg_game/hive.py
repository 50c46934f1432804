"""`make run`: the local hive, N agents (and the memory monitor) on one machine, no Docker.

Starts an embedded Redis unless CONFIG_redis_url names one, spawns the agent processes with
the environment and `.env` they share, shows the hive's progress on the console, and on
Ctrl-C (or SIGTERM) stops every process cleanly, each agent writing a final checkpoint.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from types import FrameType
from typing import Any

import redis
from dotenv import dotenv_values

from borg_game.child_process import die_with_parent
from borg_game.console import BestEvaluation, best_evaluation, render_progress
from borg_game.redis_access import redis_problem
from borg_game.redis_server import EmbeddedRedis
from borg_game.settings import SettingsError, load_settings
from borg_game.status import read_statuses


def hive_environment(base: Mapping[str, str], env_file: Path) -> dict[str, str]:
    """The environment every child gets: `.env`'s CONFIG_ keys under the real environment."""
    merged = {
        key: value
        for key, value in (dotenv_values(env_file) if env_file.is_file() else {}).items()
        if value is not None and key.upper().startswith("CONFIG_")
    }
    merged.update(base)
    return merged


def tensorboard_hint(tensorboard_dir: Path | None) -> str:
    """How to watch the run in TensorBoard, or that its event files are off."""
    if tensorboard_dir is None:
        return "TensorBoard off (CONFIG_tensorboard_dir is empty)"
    return f"TensorBoard: tensorboard --logdir {tensorboard_dir}"


class Hive:
    """The processes of one local run."""

    def __init__(self, environment: dict[str, str], log_dir: Path) -> None:
        self.environment = environment
        self.log_dir = log_dir
        self.children: dict[str, subprocess.Popen[bytes]] = {}
        self._logs: list[Any] = []

    def spawn(self, name: str, module: str, extra: Mapping[str, str]) -> None:
        """Start `python -m module` with the hive environment plus `extra`, logging to a file."""
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log = open(self.log_dir / f"{name}.log", "ab")  # noqa: SIM115 - closed in stop()
        self._logs.append(log)
        self.children[name] = subprocess.Popen(
            [sys.executable, "-m", module],
            env={**self.environment, **extra},
            stdout=log,
            stderr=subprocess.STDOUT,
            preexec_fn=die_with_parent,
        )

    def running_agents(self) -> list[str]:
        """Names of agent processes still alive."""
        return [name for name, child in self.children.items() if name.startswith("agent") and child.poll() is None]

    def failed(self) -> list[str]:
        """Children that exited with an error."""
        return [name for name, child in self.children.items() if child.poll() not in (None, 0)]

    def stop(self, timeout: float = 30.0) -> None:
        """SIGTERM every child, wait for their final checkpoints, SIGKILL stragglers."""
        for child in self.children.values():
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for name, child in self.children.items():
            try:
                child.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                print(f"{name} did not stop in {timeout:.0f}s; killing it", file=sys.stderr)
                child.kill()
                child.wait()
        for log in self._logs:
            log.close()

    def log_tail(self, name: str, lines: int = 15) -> str:
        """The end of a child's log, to show why it failed."""
        path = self.log_dir / f"{name}.log"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else ""


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Command-line flags of the launcher."""
    parser = argparse.ArgumentParser(prog="borg-hive", description=__doc__)
    parser.add_argument(
        "--agents", type=int, default=int(os.environ.get("AGENTS", "2")), help="agent processes (default 2, or $AGENTS)"
    )
    parser.add_argument("--env-id", default=os.environ.get("ENV") or None, help="gymnasium env id (sets CONFIG_env_id)")
    parser.add_argument("--env-file", type=Path, default=Path(".env"), help="file of CONFIG_ settings (default .env)")
    parser.add_argument("--progress-interval", type=float, default=5.0, help="seconds between console progress views")
    parser.add_argument("--state-dir", type=Path, default=Path(".hive"), help="embedded Redis data and process logs")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Run the local hive until every agent is done or Ctrl-C; returns the exit code."""
    args = parse_args(argv)
    if args.agents < 1:
        print(f"borg-hive: --agents must be at least 1, got {args.agents}", file=sys.stderr)
        return 2
    environment = hive_environment(os.environ, args.env_file)
    if args.env_id:
        environment["CONFIG_env_id"] = args.env_id
    environment.setdefault("CONFIG_run_id", f"local-{datetime.now().strftime('%Y%m%d-%H%M%S')}")
    # Every agent knows the hive's size: the N of CONFIG_exploration=ape_x.
    for key in [key for key in environment if key.upper() == "CONFIG_HIVE_SIZE"]:
        del environment[key]
    environment["CONFIG_hive_size"] = str(args.agents)
    config_keys = {key.upper(): key for key in environment if key.upper().startswith("CONFIG_")}
    try:  # fail here, once, rather than in N children
        settings = load_settings({key: environment[key] for key in config_keys.values()}, env_file=None)
    except SettingsError as error:
        print(f"borg-hive: invalid settings: {error}", file=sys.stderr)
        return 2

    stopping = False

    def request_stop(signum: int, _frame: FrameType | None) -> None:
        nonlocal stopping
        if not stopping:
            print(
                f"\n{signal.Signals(signum).name}: stopping the hive (agents write final checkpoints)...",
                file=sys.stderr,
            )
        stopping = True

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)

    embedded: EmbeddedRedis | None = None
    if "CONFIG_REDIS_URL" not in config_keys:
        embedded = EmbeddedRedis(data_dir=args.state_dir / "redis").start()
        environment["CONFIG_redis_url"] = embedded.url
        print(f"embedded Redis on {embedded.url}")
    redis_url = environment[config_keys.get("CONFIG_REDIS_URL", "CONFIG_redis_url")]
    problem = redis_problem(redis_url)
    if problem is not None:
        print(f"borg-hive: {problem}", file=sys.stderr)
        if embedded is not None:
            embedded.stop()
        return 2
    hive = Hive(environment, args.state_dir / "logs")
    started = time.monotonic()
    exit_code = 0
    try:
        for index in range(args.agents):
            hive.spawn(
                f"agent-{index}", "borg_game", {"CONFIG_agent_index": str(index), "CONFIG_agent_id": f"agent-{index}"}
            )
        if importlib.util.find_spec("borg_monitor") is not None:
            hive.spawn("monitor", "borg_monitor", {})
        print(
            f"hive {settings.run_id}: {args.agents} agents on {settings.env_id}; logs in {hive.log_dir}/, "
            f"{tensorboard_hint(settings.tensorboard_dir)}; Ctrl-C stops"
        )
        client = redis.Redis.from_url(redis_url, socket_timeout=5)
        last_view = 0.0
        best: BestEvaluation | None = None
        while not stopping and hive.running_agents():
            time.sleep(0.2)
            for name in hive.failed():
                print(f"{name} failed:\n{hive.log_tail(name)}", file=sys.stderr)
                exit_code = 1
                stopping = True
            if time.monotonic() - last_view >= args.progress_interval:
                last_view = time.monotonic()
                try:
                    statuses = read_statuses(client, settings.run_id)
                    best = best_evaluation(statuses, best)
                    print(render_progress(statuses, settings.run_id, last_view - started, best), flush=True)
                except redis.RedisError as error:
                    print(f"progress view: Redis not reachable ({error})", file=sys.stderr)
    finally:
        hive.stop()
        if embedded is not None:
            embedded.stop()
    for name in hive.failed():
        if exit_code == 0:
            print(f"{name} exited with an error:\n{hive.log_tail(name)}", file=sys.stderr)
        exit_code = 1
    print("hive stopped; checkpoints in", settings.model_store)
    return exit_code


if __name__ == "__main__":
    sys.exit(main())
