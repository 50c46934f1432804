"""`make bench-scale`: hives of N simulated agents against one Redis, then a primary with read replicas.

    python game/benchmarks/scale.py [--agents 1,2,4,8] [--rate 700] [--replicas 2] [--seconds 5]

A simulated agent is one process doing what an agent does to Redis, without learning: the
agent's ReplayWriter (background thread, batches of 64, MULTI LPUSH+LTRIM+INCRBY) pushing
real Pong transitions (played with random actions on the agent's env stack, encoded by the
agent's codec) at `--rate` transitions/s, and the agent's MirrorSampler pulling every
transition the hive pushed, once per training round (`--train-frequency` steps, as the
agent syncs). With replicas, pulls go to replica i % R (CONFIG_redis_read_url) and pushes
to the primary. Each N runs `--warmup` seconds, then is measured for `--seconds`:

- primary_cpu: cores of the primary's redis-server (INFO used_cpu_sys + used_cpu_user) and
  per agent; replica_cpu_max: the busiest replica's.
- primary_egress / primary_ingress: bytes/s out of and into the primary (INFO stats
  total_net_output_bytes / total_net_input_bytes), per agent; replicas_egress: all replicas'.
- insert_rate: transitions/s the push counter rose by (target N x rate); pull_rate: mean
  transitions/s one mirror took in (ideal: the insert rate).
- pull_lag: transitions between the primary's counter and what a mirror holds, sampled
  every 0.25 s: mean and 95th percentile, and the mean in seconds of the hive's pushes.
- push/pull_command_us_per_transition: time inside the push commands (MULTI, LPUSH, LTRIM,
  INCRBY, EXEC) per pushed transition and inside the pull script per pulled one, from INFO
  commandstats: wall time, so inflated whenever the server is descheduled on a busy machine.
- machine_busy: the whole machine's CPU use. The simulated agents share the machine with
  Redis: where it is near 1.0 the clients, not Redis, ran out of CPU.
- saturated: the hive fell behind (inserts or pulls under 95 % of the target, or the p95 lag
  over one second of pushes). N keeps doubling past --agents while nothing saturates, up to
  --max-agents.

From every run it fits the primary's CPU as a x pushed/s + b x pulled/s (least squares;
with replicas the primary serves no pulls) and prints the capacity model of docs/kubernetes.md:
agents per primary and replicas per hive size. Results go to bench-results.json under `runs.scale`.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from multiprocessing.sharedctypes import SynchronizedArray
from multiprocessing.synchronize import Event as EventType
from pathlib import Path
from typing import Any

import numpy as np
import redis
from loguru import logger
from machine import RESULTS_FILE, describe_machine, write_results

from borg_game.redis_access import open_read_replica
from borg_game.redis_server import EmbeddedRedis
from borg_game.replay_memory import build_replay_memory
from borg_game.settings import load_settings

COUNTER = "transitions:pushed:ALE/Pong-v5"  # the agents' default push counter (of the default env)
PASSWORD = "bench-scale"
# A primary's main thread is one core; past this share of it, latency climbs steeply.
CPU_BUDGET = 0.8
LAG_SAMPLE_SECONDS = 0.25


def simulated_agent(
    index: int,
    primary_url: str,
    read_url: str,
    entries: list[bytes],
    rate: float,
    sync_interval: float,
    capacity: int,
    ready: Any,
    go: EventType,
    stop: EventType,
    held: SynchronizedArray[int],
    dropped: SynchronizedArray[int],
) -> None:
    """One agent's traffic: pushes at `rate` through the ReplayWriter, pulls through the MirrorSampler."""
    logger.remove()
    logger.add(sys.stderr, level="ERROR")
    primary = redis.Redis.from_url(primary_url)
    reads = primary if read_url == primary_url else open_read_replica(read_url)
    # The agent's own builder and defaults (batches of 64, queue 10k, the mirror), pulls on `reads`.
    settings = load_settings({"CONFIG_replay_capacity": str(capacity)}, env_file=None)
    memory = build_replay_memory(settings, primary, reads)
    writer, mirror = memory.writer, memory.sampler
    ready.put(index)
    go.wait()
    started = next_sync = time.perf_counter()
    added = 0
    behind_limit = max(1, int(rate * 0.1))  # steps of play at most 0.1 s late
    while not stop.is_set():
        now = time.perf_counter()
        due = int(rate * (now - started))
        if due - added > behind_limit:
            # Starved of CPU: an agent plays on from where it is, it does not make up lost steps.
            started += (due - added - behind_limit) / rate
            due = added + behind_limit
        while added < due:
            writer.add(entries[(index * 997 + added) % len(entries)])
            added += 1
        if now >= next_sync:
            mirror.sync()
            held[index] = mirror.size()
            next_sync = now + sync_interval
        time.sleep(max(0.0, min(0.002, next_sync - time.perf_counter())))
    writer.close(timeout=10.0)
    dropped[index] = writer.dropped


@dataclass
class Snapshot:
    """Cumulative counters of one redis-server at one moment."""

    at: float
    cpu_seconds: float
    output_bytes: int
    input_bytes: int
    push_command_us: int
    pull_command_us: int


# What the writers' MULTI/EXEC runs, and the mirrors' pull script in each of its forms.
PUSH_COMMANDS = ("multi", "lpush", "ltrim", "incrby", "exec")
PULL_COMMANDS = ("evalsha_ro", "eval_ro", "evalsha", "eval")


def snapshot(client: redis.Redis) -> Snapshot:
    """CPU seconds, network bytes and the time spent in push and pull commands so far."""
    cpu, stats, commands = client.info("cpu"), client.info("stats"), client.info("commandstats")

    def command_us(names: tuple[str, ...]) -> int:
        return sum(int(commands.get(f"cmdstat_{name}", {}).get("usec", 0)) for name in names)

    return Snapshot(
        time.perf_counter(),
        float(cpu["used_cpu_sys"]) + float(cpu["used_cpu_user"]),
        int(stats["total_net_output_bytes"]),
        int(stats["total_net_input_bytes"]),
        command_us(PUSH_COMMANDS),
        command_us(PULL_COMMANDS),
    )


def machine_busy_jiffies() -> tuple[int, int]:
    """(busy, total) CPU jiffies of the whole machine, from /proc/stat."""
    fields = [int(value) for value in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = fields[3] + fields[4]
    return sum(fields) - idle, sum(fields)


class Servers:
    """A password-protected primary and `replicas` read replicas of it, on loopback."""

    def __init__(self, replicas: int, executable: str | None) -> None:
        self.primary = EmbeddedRedis(password=PASSWORD, executable=executable).start()
        self.replicas = [
            EmbeddedRedis(password=PASSWORD, executable=executable, replica_of=self.primary.port).start()
            for _ in range(replicas)
        ]
        self.primary_client = redis.Redis.from_url(self.primary.url)
        self.replica_clients = [redis.Redis.from_url(replica.url) for replica in self.replicas]

    def reset(self, timeout: float = 60.0) -> None:
        """An empty memory everywhere: FLUSHALL on the primary, then wait until every replica has it."""
        self.primary_client.flushall()
        deadline = time.monotonic() + timeout
        while not self._replicas_caught_up():
            if time.monotonic() > deadline:
                raise RuntimeError(f"replicas did not catch up in {timeout:.0f}s")
            time.sleep(0.05)

    def _replicas_caught_up(self) -> bool:
        info = self.primary_client.info("replication")
        offsets = [info.get(f"slave{index}", {}) for index in range(int(info.get("connected_slaves", 0)))]
        online = [entry for entry in offsets if entry.get("state") == "online"]
        return len(online) == len(self.replicas) and all(
            int(entry["offset"]) >= int(info["master_repl_offset"]) for entry in online
        )

    def read_url(self, agent: int) -> str:
        """Where agent `agent` pulls from: a replica, round robin, else the primary."""
        return self.replicas[agent % len(self.replicas)].url if self.replicas else self.primary.url

    def close(self) -> None:
        """Stop every server."""
        for client in (self.primary_client, *self.replica_clients):
            client.close()
        for server in (*self.replicas, self.primary):
            server.stop()


def per_second(before: Snapshot, after: Snapshot) -> dict[str, float]:
    """CPU cores and bytes/s between two snapshots."""
    elapsed = after.at - before.at
    return {
        "cpu": (after.cpu_seconds - before.cpu_seconds) / elapsed,
        "egress": (after.output_bytes - before.output_bytes) / elapsed,
        "ingress": (after.input_bytes - before.input_bytes) / elapsed,
    }


def run_hive(servers: Servers, agents: int, entries: list[bytes], args: argparse.Namespace) -> dict[str, Any]:
    """N simulated agents for warm-up + measurement; the figures of the measured window."""
    servers.reset()
    capacity = max(100_000, int(1.2 * agents * args.rate * (args.warmup + args.seconds + 10)))
    context = multiprocessing.get_context("spawn")
    ready = context.Queue()
    go, stop = context.Event(), context.Event()
    held, dropped = context.Array("q", agents), context.Array("q", agents)
    processes = [
        context.Process(
            target=simulated_agent,
            args=(
                index,
                servers.primary.url,
                servers.read_url(index),
                entries,
                args.rate,
                args.train_frequency / args.rate,
                capacity,
                ready,
                go,
                stop,
                held,
                dropped,
            ),
            daemon=True,
        )
        for index in range(agents)
    ]
    launched = time.perf_counter()
    for process in processes:
        process.start()
    for _ in processes:
        ready.get(timeout=300)
    print(f"  N={agents}: agents up in {time.perf_counter() - launched:.0f}s; measuring", flush=True)
    go.set()
    time.sleep(args.warmup)
    clients = [servers.primary_client, *servers.replica_clients]
    before = [snapshot(client) for client in clients]
    busy_before = machine_busy_jiffies()
    counter_before, held_before = int(servers.primary_client.get(COUNTER) or 0), held[:]
    lags: list[int] = []
    started = time.perf_counter()
    while time.perf_counter() - started < args.seconds:
        counter = int(servers.primary_client.get(COUNTER) or 0)
        lags += [counter - position for position in held[:]]
        time.sleep(LAG_SAMPLE_SECONDS)
    after = [snapshot(client) for client in clients]
    busy_after = machine_busy_jiffies()
    counter_after, held_after = int(servers.primary_client.get(COUNTER) or 0), held[:]
    elapsed = after[0].at - before[0].at
    stop.set()
    for process in processes:
        process.join(timeout=60)
    print(f"  N={agents}: done in {time.perf_counter() - launched:.0f}s", flush=True)
    primary = per_second(before[0], after[0])
    replicas = [per_second(start, end) for start, end in zip(before[1:], after[1:], strict=True)]
    insert_rate = (counter_after - counter_before) / elapsed
    pull_rate = float(np.mean([end - start for start, end in zip(held_before, held_after, strict=True)])) / elapsed
    lag_mean = float(np.mean(lags)) if lags else 0.0
    lag_p95 = float(np.percentile(lags, 95)) if lags else 0.0
    target = agents * args.rate
    result = {
        "agents": agents,
        "replicas": len(servers.replicas),
        "target_insert_rate": target,
        "insert_rate": insert_rate,
        "pull_rate_per_agent": pull_rate,
        "primary_cpu": primary["cpu"],
        "primary_cpu_per_agent": primary["cpu"] / agents,
        "primary_egress_per_agent": primary["egress"] / agents,
        "primary_ingress_per_agent": primary["ingress"] / agents,
        "replica_cpu_max": max((replica["cpu"] for replica in replicas), default=None),
        "replicas_egress": sum(replica["egress"] for replica in replicas),
        "pull_lag_mean": lag_mean,
        "pull_lag_p95": lag_p95,
        "pull_lag_seconds": lag_mean / insert_rate if insert_rate else None,
        "machine_busy": (busy_after[0] - busy_before[0]) / max(1, busy_after[1] - busy_before[1]),
        "dropped": sum(dropped[:]),
    }
    # Time inside the commands alone (INFO commandstats): without the event loop and socket I/O
    # that used_cpu adds, so less disturbed by other work on the machine.
    pushed, pulled = (
        counter_after - counter_before,
        sum(end - start for start, end in zip(held_before, held_after, strict=True)),
    )
    push_us = after[0].push_command_us - before[0].push_command_us
    pull_us = sum(end.pull_command_us - start.pull_command_us for start, end in zip(before, after, strict=True))
    result["push_command_us_per_transition"] = push_us / pushed if pushed else None
    result["pull_command_us_per_transition"] = pull_us / pulled if pulled else None
    result["saturated"] = bool(
        insert_rate < 0.95 * target or pull_rate < 0.95 * insert_rate or lag_p95 > max(insert_rate, 1.0)
    )
    return result


def fit_costs(runs: Sequence[dict[str, Any]]) -> dict[str, float]:
    """The primary's CPU seconds per pushed and per pulled transition (least squares over every run).

    One-Redis runs give pushes and pulls together; with replicas the primary serves pushes only
    (and feeds the replicas), which separates the two costs.
    """
    pushed = np.array([run["insert_rate"] for run in runs])
    pulled = np.array([0.0 if run["replicas"] else run["pull_rate_per_agent"] * run["agents"] for run in runs])
    cpu = np.array([run["primary_cpu"] for run in runs])
    (per_push, per_pull), *_ = np.linalg.lstsq(np.stack([pushed, pulled], axis=1), cpu, rcond=None)
    # A negative cost is noise (few runs, a busy machine): the other term then explains it all.
    if per_push < 0:
        per_push, per_pull = 0.0, float(pulled @ cpu / (pulled @ pulled))
    elif per_pull < 0:
        per_push, per_pull = float(pushed @ cpu / (pushed @ pushed)), 0.0
    return {"cpu_us_per_push": float(per_push) * 1e6, "cpu_us_per_pull": float(per_pull) * 1e6}


def agents_within(budget: float, push: float, pull: float, rate: float) -> int:
    """The largest N with push x N x rate + pull x N^2 x rate <= budget (cores)."""
    if pull <= 0:
        return int(budget / (push * rate)) if push > 0 else sys.maxsize
    linear, quadratic = push * rate, pull * rate
    return int((-linear + np.sqrt(linear * linear + 4 * quadratic * budget)) / (2 * quadratic))


def capacity_model(costs: dict[str, float], rate: float, entry_bytes: float) -> dict[str, Any]:
    """Agents per primary and replicas per hive size at `rate` transitions/s per agent.

    A hive of N agents pushes N x rate and pulls N x N x rate transitions/s. On one Redis its
    CPU is push x N x rate + pull x N^2 x rate; with read replicas the primary keeps the pushes
    (and sends the stream to each replica) and each replica applies the pushes and serves its
    share of the pulls.
    """
    push, pull = costs["cpu_us_per_push"] * 1e-6, costs["cpu_us_per_pull"] * 1e-6

    def one_redis_cpu(agents: int) -> float:
        return push * agents * rate + pull * agents * agents * rate

    agents_one_redis = agents_within(CPU_BUDGET, push, pull, rate)
    hives = {}
    for agents in (8, 64, 512):
        reads = pull * agents * agents * rate
        apply = push * agents * rate  # a replica applies every push, as the primary does
        replicas: int | None = 0
        if one_redis_cpu(agents) > CPU_BUDGET:
            # None: the pushes alone fill a primary; such a hive must be split, replicas cannot help.
            replicas = None if apply >= CPU_BUDGET else int(np.ceil(reads / (CPU_BUDGET - apply)))
        hives[str(agents)] = {
            "one_redis_cpu": one_redis_cpu(agents),
            "push_bytes_per_second": agents * rate * entry_bytes,
            "pull_bytes_per_second_per_agent": agents * rate * entry_bytes,
            "pull_bytes_per_second_total": agents * agents * rate * entry_bytes,
            "replicas_needed": replicas,
        }
    return {"rate_per_agent": rate, "agents_per_primary": agents_one_redis, "hives": hives}


def print_row(run: dict[str, Any]) -> None:
    """One table line per hive size."""
    replica_cpu = run["replica_cpu_max"]
    print(
        f"{run['replicas']:>3} {run['agents']:>4} {run['insert_rate']:>9,.0f}/{run['target_insert_rate']:<7,.0f}"
        f" {run['pull_rate_per_agent']:>9,.0f} {run['primary_cpu']:>6.2f} {run['primary_cpu_per_agent']:>7.3f}"
        f" {'-' if replica_cpu is None else f'{replica_cpu:.2f}':>6}"
        f" {run['primary_egress_per_agent'] / 1e6:>8.2f} {run['primary_ingress_per_agent'] / 1e6:>7.2f}"
        f" {run['pull_lag_mean']:>8,.0f} {run['pull_lag_p95']:>8,.0f} {run['machine_busy']:>5.2f}"
        f" {'SATURATED' if run['saturated'] else 'ok'}",
        flush=True,
    )


HEADER = (
    "rep    N   inserts/s target  pulled/s  p.cpu cpu/agt  r.cpu  out MB/s  in MB/s  lag avg  lag p95  busy"
    "\n              (per agent: pulled, out, in; cpu in cores; lag in transitions)"
)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The benchmark's sizes."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--agents", default="1,2,4,8", help="hive sizes (N keeps doubling while none saturates)")
    parser.add_argument("--max-agents", type=int, default=32, help="largest hive tried")
    parser.add_argument("--rate", type=float, default=700.0, help="transitions/s each agent pushes (GPU agent: ~700)")
    parser.add_argument("--train-frequency", type=int, default=4, help="steps between two mirror pulls")
    parser.add_argument("--replicas", type=int, default=2, help="read replicas of the second topology")
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds before measuring")
    parser.add_argument("--seconds", type=float, default=5.0, help="seconds measured per hive size")
    parser.add_argument("--pong-steps", type=int, default=2000, help="Pong steps played for the transitions")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--redis-server", default=None, help="redis-server binary (default: the system's)")
    parser.add_argument("--output", type=Path, default=RESULTS_FILE, help="JSON results (merged into)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Both topologies, every hive size; the table, the model and the JSON."""
    args = parse_args(argv)
    logger.remove()
    logger.add(sys.stderr, level="WARNING")
    started = time.perf_counter()
    machine = describe_machine(args.redis_server)
    print(f"{machine['cpu_model']}, {machine['cpu_cores']} cores; {machine['redis_server']}", flush=True)
    from throughput import play_pong  # torch and the env stack: only here, never in the agents' processes

    entries = play_pong(args.pong_steps, args.seed, reference_count=0).entries
    entry_bytes = sum(map(len, entries)) / len(entries)
    print(f"{len(entries)} Pong transitions of {entry_bytes:.0f} B on average; {args.rate:.0f}/s per agent", flush=True)
    sizes = [int(size) for size in args.agents.split(",")]
    runs: list[dict[str, Any]] = []
    for replicas in (0, args.replicas):
        servers = Servers(replicas, args.redis_server)
        print(f"\n{'one Redis' if not replicas else f'primary + {replicas} read replicas'}\n{HEADER}", flush=True)
        try:
            queue = list(sizes)
            while queue:
                agents = queue.pop(0)
                run = run_hive(servers, agents, entries, args)
                runs.append(run)
                print_row(run)
                if not queue and not run["saturated"] and agents * 2 <= args.max_agents:
                    queue.append(agents * 2)
        finally:
            servers.close()
    costs = fit_costs(runs)
    results_extra: dict[str, float] = {}
    model = capacity_model(costs, args.rate, entry_bytes)
    print(
        f"\nprimary CPU: {costs['cpu_us_per_push']:.2f} us per pushed transition,"
        f" {costs['cpu_us_per_pull']:.2f} us per pulled transition (fit over {len(runs)} runs)"
    )
    for name in ("push", "pull"):
        values = [run[f"{name}_command_us_per_transition"] for run in runs if run[f"{name}_command_us_per_transition"]]
        median = float(np.median(values)) if values else float("nan")
        print(f"inside {name} commands (INFO commandstats, wall time): {median:.2f} us per {name}ed transition")
        results_extra[f"scale_{name}_command_us_median"] = median
    print(f"agents per primary at {args.rate:.0f}/s each, {CPU_BUDGET:.0%} of a core: {model['agents_per_primary']}")
    for agents, hive in model["hives"].items():
        needed = hive["replicas_needed"]
        print(
            f"  {agents:>4} agents: one Redis would need {hive['one_redis_cpu']:.1f} cores;"
            f" each agent pulls {hive['pull_bytes_per_second_per_agent'] / 1e6:.1f} MB/s;"
            f" read replicas needed: {'writes alone exceed a primary' if needed is None else needed}"
        )
    machine["load_average_1m_after"] = round(os.getloadavg()[0], 2)
    results: dict[str, Any] = {
        "scale_entry_bytes": entry_bytes,
        "scale_cpu_us_per_push": costs["cpu_us_per_push"],
        "scale_cpu_us_per_pull": costs["cpu_us_per_pull"],
        "scale_agents_per_primary": model["agents_per_primary"],
        **results_extra,
        "scale_runs": runs,
        "scale_model": model,
        "scale_bench_seconds": time.perf_counter() - started,
        "machine": machine,
        "arguments": {key: str(value) for key, value in vars(args).items()},
    }
    write_results("scale", results, args.output)
    print(f"\n{results['scale_bench_seconds']:.0f}s; results merged into {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
