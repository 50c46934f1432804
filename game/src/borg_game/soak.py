"""`make soak`: run the local hive for a long time and watch it for leaks, crashes and drops.

Starts `python -m borg_game.hive` (4 agents by default, each on its own embedded-Redis
client), samples every process's resident memory and the Redis memory on an interval, and
at the end stops the hive with SIGINT as a user would. Reports RSS over time per process,
Redis memory over time, errors and tracebacks in the logs, and counted drops; exits 1 when a
process crashed or logged a traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import redis

from borg_game.redis_server import EmbeddedRedis
from borg_game.settings import load_settings


@dataclass
class Sample:
    """One look at the hive."""

    elapsed_seconds: float
    rss_mib: dict[str, float]
    redis_used_mib: float
    transitions: int
    pushed: int


@dataclass
class SoakReport:
    """What a soak run saw."""

    minutes: float
    agents: int
    env_id: str
    samples: list[Sample] = field(default_factory=list)
    tracebacks: int = 0
    errors: int = 0
    dropped_transitions: int = 0
    crashed: list[str] = field(default_factory=list)
    exit_code: int | None = None


def process_tree(root: int) -> list[int]:
    """`root` and all its descendants, from /proc."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(entry.name))
    tree, frontier = [root], [root]
    while frontier:
        frontier = [child for pid in frontier for child in children.get(pid, [])]
        tree += frontier
    return tree


def rss_mib(pid: int) -> float | None:
    """Resident memory of a process in MiB, None once it is gone."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    match = re.search(r"VmRSS:\s+(\d+) kB", status)
    return int(match.group(1)) / 1024 if match else None


def process_name(pid: int) -> str:
    """A readable name: the agent or service a process runs."""
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    except OSError:
        return str(pid)
    agent = next((item.split(b"=", 1)[1].decode() for item in environ if item.startswith(b"CONFIG_agent_id=")), None)
    program = " ".join(part.decode(errors="replace") for part in argv if part)
    if agent and "borg_game" in program and "hive" not in program:
        return agent
    for known in ("borg_game.hive", "borg_monitor", "redis-server"):
        if known in program:
            return known.replace("borg_game.", "")
    return f"{pid}:{program[:40]}"


def scan_logs(log_dir: Path) -> tuple[int, int, int]:
    """Tracebacks, ERROR lines and the largest 'dropped N' count in the hive's process logs."""
    tracebacks = errors = dropped = 0
    for log in log_dir.glob("*.log"):
        text = log.read_text(errors="replace")
        tracebacks += text.count("Traceback (most recent call last)")
        errors += len(re.findall(r"^\S+ ERROR ", text, flags=re.MULTILINE))
        dropped += max((int(value) for value in re.findall(r"dropped (\d+)", text)), default=0)
    return tracebacks, errors, dropped


def run_soak(
    minutes: float, agents: int, env_id: str, interval: float, workdir: Path, extra: dict[str, str]
) -> SoakReport:
    """Run the hive for `minutes`, sampling every `interval` seconds, then stop it with SIGINT."""
    report = SoakReport(minutes=minutes, agents=agents, env_id=env_id)
    workdir.mkdir(parents=True, exist_ok=True)
    with EmbeddedRedis(data_dir=workdir / "redis") as server:
        environment = {key: value for key, value in os.environ.items() if not key.upper().startswith("CONFIG_")}
        environment.update({"CONFIG_redis_url": server.url, "CONFIG_env_id": env_id, **extra})
        # The agents' own reading of these settings names the keys to watch (CONFIG_replay_key...).
        settings = load_settings(environment, env_file=None)
        hive = subprocess.Popen(
            [sys.executable, "-m", "borg_game.hive", "--agents", str(agents), "--state-dir", str(workdir / "hive")],
            cwd=workdir,
            env=environment,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        client = redis.Redis.from_url(server.url)
        started = time.monotonic()
        names: dict[int, str] = {}
        while time.monotonic() - started < minutes * 60 and hive.poll() is None:
            time.sleep(min(interval, max(0.1, minutes * 60 - (time.monotonic() - started))))
            memory: dict[str, float] = {}
            for pid in [*process_tree(hive.pid), *process_tree(server.pid)]:
                names.setdefault(pid, process_name(pid))
                rss = rss_mib(pid)
                if rss is not None:
                    memory[names[pid]] = round(rss, 1)
            info = client.info("memory")
            sample = Sample(
                elapsed_seconds=round(time.monotonic() - started, 1),
                rss_mib=memory,
                redis_used_mib=round(int(info["used_memory"]) / 2**20, 1),
                transitions=int(client.llen(settings.env_replay_key)),
                pushed=int(client.get(settings.env_push_counter_key) or 0),
            )
            report.samples.append(sample)
            print(
                f"[{sample.elapsed_seconds:5.0f}/{minutes * 60:.0f}s] redis {sample.redis_used_mib} MiB, "
                f"{sample.transitions:,} held, "
                f"{sample.pushed:,} pushed | "
                + ", ".join(f"{name} {value:.0f}" for name, value in sorted(memory.items())),
                flush=True,
            )
        if hive.poll() is None:
            print("stopping the hive with SIGINT (final checkpoints) ...", flush=True)
            os.killpg(hive.pid, signal.SIGINT)  # as Ctrl-C in a terminal
            try:
                hive.wait(120)
            except subprocess.TimeoutExpired:
                os.killpg(hive.pid, signal.SIGKILL)
                hive.wait()
                report.crashed.append("hive did not stop within 120 s of SIGINT")
        report.exit_code = hive.returncode
    if report.exit_code != 0:
        report.crashed.append(f"hive exited with {report.exit_code}")
    report.tracebacks, report.errors, report.dropped_transitions = scan_logs(workdir / "hive" / "logs")
    return report


def summarize(report: SoakReport) -> str:
    """A Markdown table of RSS per process (first, last, max, growth) plus the totals."""
    lines = [
        f"Soak: {report.agents} agents on {report.env_id} for {report.minutes:g} min, {len(report.samples)} samples",
        "",
        "| process | RSS first (MiB) | RSS last | RSS max | growth after warm-up (MiB/min) |",
        "|---|---|---|---|---|",
    ]
    names = sorted({name for sample in report.samples for name in sample.rss_mib})
    warm = report.samples[len(report.samples) // 3 :] or report.samples
    for name in names:
        series = [(sample.elapsed_seconds, sample.rss_mib[name]) for sample in report.samples if name in sample.rss_mib]
        warm_series = [(t, v) for t, v in series if t >= warm[0].elapsed_seconds] or series
        span_minutes = max(1e-9, (warm_series[-1][0] - warm_series[0][0]) / 60)
        growth = (warm_series[-1][1] - warm_series[0][1]) / span_minutes if len(warm_series) > 1 else 0.0
        values = [value for _, value in series]
        lines.append(f"| {name} | {values[0]:.0f} | {values[-1]:.0f} | {max(values):.0f} | {growth:+.1f} |")
    if report.samples:
        first, last = report.samples[0], report.samples[-1]
        lines += [
            "",
            f"Redis used memory: {first.redis_used_mib} -> {last.redis_used_mib} MiB "
            f"({first.transitions:,} -> {last.transitions:,} transitions held, {last.pushed:,} pushed)",
        ]
    lines.append(
        f"Tracebacks: {report.tracebacks}, ERROR lines: {report.errors}, dropped transitions: "
        f"{report.dropped_transitions}, crashes: {report.crashed or 'none'}"
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Run a soak; exit 1 on a crash or a traceback."""
    parser = argparse.ArgumentParser(prog="borg-soak", description=__doc__)
    parser.add_argument("--minutes", type=float, default=30.0, help="how long the hive runs (default 30)")
    parser.add_argument("--agents", type=int, default=4, help="agent processes (default 4)")
    parser.add_argument("--env-id", default="ALE/Pong-v5", help="environment (default ALE/Pong-v5)")
    parser.add_argument("--interval", type=float, default=15.0, help="seconds between samples")
    parser.add_argument("--workdir", type=Path, default=Path(".hive/soak"), help="where the run keeps its state")
    parser.add_argument("--report", type=Path, help="also write the samples and summary as JSON here")
    parser.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="a CONFIG_ setting for the agents (repeatable)"
    )
    args = parser.parse_args(argv)
    extra = {"CONFIG_learning_starts": "1000", "CONFIG_checkpoint_interval": "2000", "CONFIG_eval_interval": "0"}
    for item in args.set:
        key, _, value = item.partition("=")
        extra[f"CONFIG_{key.removeprefix('CONFIG_')}"] = value
    report = run_soak(args.minutes, args.agents, args.env_id, args.interval, args.workdir.resolve(), extra)
    summary = summarize(report)
    print(summary)
    if args.report:
        payload: dict[str, Any] = {**asdict(report), "summary": summary}
        args.report.write_text(json.dumps(payload, indent=2))
    return 1 if report.crashed or report.tracebacks else 0


if __name__ == "__main__":
    sys.exit(main())
