"""The shared replay memory against a real redis-server."""

from __future__ import annotations

import functools
import multiprocessing
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from typing import TypeVar

import numpy as np
import numpy.typing as npt
import pytest
import redis
from loguru import logger

from borg_game.codec import Transition, TransitionCodec
from borg_game.direct_sampler import DirectSampler
from borg_game.mirror import MirrorSampler
from borg_game.replay_writer import ReplayWriter, push_transaction

KEY, COUNTER = "transitions", "transitions:pushed"
T = TypeVar("T")


def vector_transition(agent_id: str, step: int, agent_number: int = 0) -> Transition:
    state = np.array([step, agent_number, -0.5, 1.0], dtype=np.float32)
    return Transition(state, step % 2, 1.0, state + 1, False, False, agent_id, 0, step, time.time_ns())


def stored(client: redis.Redis, start: int = 0, end: int = -1) -> list[bytes]:
    entries = [entry for entry in client.lrange(KEY, start, end) if isinstance(entry, bytes)]
    return entries


def mirror_rows(mirror: MirrorSampler) -> list[tuple[int, int]]:
    """(agent_number, step) of every held transition, oldest first."""
    store = mirror._store
    assert store is not None and store.dense
    order = np.roll(np.arange(store.size), -store.cursor) if store.size == store.capacity else np.arange(store.size)
    return [(int(store.states[index, 1]), int(store.states[index, 0])) for index in order]


def drain(writer: ReplayWriter, expected: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while writer.pushed < expected and time.monotonic() < deadline:
        time.sleep(0.01)
    assert writer.pushed == expected


def finishes(call: Callable[[], T], timeout: float = 120.0) -> T:
    """The result of `call`, run on a thread that must come back: a call that blocks (on a
    Redis that never answers, on a queue never drained) fails the test instead of hanging it."""
    results: list[T] = []
    thread = threading.Thread(target=lambda: results.append(call()), daemon=True)
    thread.start()
    thread.join(timeout)
    assert not thread.is_alive(), f"{call} still blocked after {timeout:.0f}s"
    assert results, f"{call} raised (see the thread's traceback above)"
    return results[0]


def test_two_agents_transitions_land_in_one_list(redis_client: redis.Redis) -> None:
    codec = TransitionCodec()
    writers = [ReplayWriter(redis_client, KEY, COUNTER, capacity=1000, batch_size=8) for _ in range(2)]
    for step in range(50):
        for index, writer in enumerate(writers):
            writer.add(codec.encode(vector_transition(f"agent-{index}", step)))
    for writer in writers:
        drain(writer, 50)
        writer.close()
    entries = stored(redis_client, 0, -1)
    assert len(entries) == 100 == int(redis_client.get(COUNTER) or 0)
    agents = {codec.decode(entry).agent_id for entry in entries}
    assert agents == {"agent-0", "agent-1"}


def test_list_never_exceeds_capacity(redis_client: redis.Redis) -> None:
    codec = TransitionCodec()
    writer = ReplayWriter(redis_client, KEY, COUNTER, capacity=64, batch_size=10)
    longest = 0
    for step in range(500):
        writer.add(codec.encode(vector_transition("a", step)))
        if step % 50 == 0:
            longest = max(longest, int(redis_client.llen(KEY)))
    drain(writer, 500)
    writer.close()
    assert max(longest, int(redis_client.llen(KEY))) <= 64
    assert int(redis_client.llen(KEY)) == 64
    newest = codec.decode(stored(redis_client, 0, 0)[0])
    assert newest.step == 499  # newest at the head


def test_agent_b_samples_what_agent_a_pushed_bit_exact(redis_client: redis.Redis) -> None:
    codec = TransitionCodec()
    # Every third one an n-step transition, spanning 2 or 3 steps.
    pushed = {
        transition.step: replace(transition, later_rewards=(0.5, -1.0)[: 1 + transition.step % 2])
        if transition.step % 3 == 0
        else transition
        for transition in frame_stack_transitions(36)
    }
    writer_a = ReplayWriter(redis_client, KEY, COUNTER, capacity=1000)
    for transition in pushed.values():
        writer_a.add(codec.encode(transition))
    drain(writer_a, 36)
    writer_a.close()
    for sampler in (
        MirrorSampler(redis.Redis.from_url(_url(redis_client)), KEY, COUNTER, 1000, codec),
        DirectSampler(redis_client, KEY, COUNTER, codec),
    ):
        assert sampler.sync()
        assert sampler.size() == 36
        batch = sampler.sample(16, np.random.default_rng(1))
        assert batch is not None and len(batch.actions) == 16
        for row in range(16):
            step = int(batch.timestamps_ns[row])
            original = pushed[step]
            assert np.array_equal(batch.observations[row], original.state)
            assert np.array_equal(batch.next_observations[row], original.next_state)
            assert batch.actions[row] == original.action and batch.rewards[row] == original.reward
            assert batch.later_rewards is not None and batch.spans is not None
            later = tuple(batch.later_rewards[row, : batch.spans[row] - 1].tolist())
            assert later == original.later_rewards and not batch.later_rewards[row, batch.spans[row] - 1 :].any()


def _url(client: redis.Redis) -> str:
    kwargs = client.connection_pool.connection_kwargs
    return f"redis://{kwargs['host']}:{kwargs['port']}/0"


def test_mirror_pulls_only_new_entries_in_order(redis_client: redis.Redis) -> None:
    codec = TransitionCodec()
    mirror = MirrorSampler(redis_client, KEY, COUNTER, capacity=100, codec=codec, pull_chunk=7)
    assert mirror.sync() and mirror.size() == 0

    def push(steps: range) -> None:
        pipeline = redis_client.pipeline(transaction=True)
        push_transaction(pipeline, KEY, COUNTER, 100, [codec.encode(vector_transition("a", step)) for step in steps])
        pipeline.execute()

    push(range(0, 30))
    assert mirror.sync()
    assert [step for _, step in mirror_rows(mirror)] == list(range(30))
    push(range(30, 45))
    assert mirror.sync()
    assert [step for _, step in mirror_rows(mirror)] == list(range(45))
    assert mirror.hive_pushed == 45
    # Falling more than `capacity` behind: the mirror skips to what Redis still holds.
    push(range(45, 400))
    assert mirror.sync()
    steps = sorted(step for _, step in mirror_rows(mirror))
    assert len(steps) == 100 and steps == list(range(300, 400))


def test_empty_memory_never_blocks_and_never_pads(redis_client: redis.Redis) -> None:
    codec = TransitionCodec()
    rng = np.random.default_rng(0)
    for sampler in (
        MirrorSampler(redis_client, KEY, COUNTER, 100, codec),
        DirectSampler(redis_client, KEY, COUNTER, codec),
    ):
        assert finishes(sampler.sync) is True
        assert finishes(functools.partial(sampler.sample, 32, rng)) is None
    # One transition in memory: still no batch of 32 copies of it.
    writer = ReplayWriter(redis_client, KEY, COUNTER, capacity=100)
    writer.add(codec.encode(vector_transition("a", 1)))
    drain(writer, 1)
    writer.close()
    for sampler in (
        MirrorSampler(redis_client, KEY, COUNTER, 100, codec),
        DirectSampler(redis_client, KEY, COUNTER, codec),
    ):
        assert sampler.sync()
        assert sampler.sample(32, rng) is None


def _pusher(url: str, number: int, count: int, batch: int) -> None:
    client = redis.Redis.from_url(url)
    codec = TransitionCodec()
    for start in range(0, count, batch):
        entries = [
            codec.encode(vector_transition(f"p{number}", step, number))
            for step in range(start, min(count, start + batch))
        ]
        pipeline = client.pipeline(transaction=True)
        push_transaction(pipeline, KEY, COUNTER, 100_000, entries)
        pipeline.execute()


def test_counter_and_list_stay_consistent_under_concurrent_pushers(redis_client: redis.Redis) -> None:
    url = _url(redis_client)
    codec = TransitionCodec()
    mirror = MirrorSampler(redis_client, KEY, COUNTER, capacity=100_000, codec=codec, pull_chunk=50)
    context = multiprocessing.get_context("spawn")
    processes = [context.Process(target=_pusher, args=(url, index, 2000, 7)) for index in range(4)]
    for process in processes:
        process.start()
    # Pull while they push: every pull must see each agent's steps in order, without gaps.
    while any(process.is_alive() for process in processes):
        assert mirror.sync()
        time.sleep(0.005)
    for process in processes:
        process.join()
        assert process.exitcode == 0
    assert mirror.sync()
    assert int(redis_client.get(COUNTER) or 0) == 8000
    assert int(redis_client.llen(KEY)) == 8000
    seen: dict[str, list[int]] = {}
    for agent_number, step in mirror_rows(mirror):
        seen.setdefault(f"p{agent_number}", []).append(step)
    for name in (f"p{index}" for index in range(4)):
        assert seen[name] == list(range(2000)), f"{name}: mirror missed or reordered entries"
    newest = [codec.decode(entry) for entry in stored(redis_client, 0, 249)]
    # The head of the list is the 250 newest pushes: each agent's steps there are its latest ones.
    for name in seen:
        steps = [item.step for item in newest if item.agent_id == name]
        assert steps == sorted(steps, reverse=True)
        if steps:
            assert steps[0] == 1999


def test_full_queue_drops_are_counted_not_silent(redis_client: redis.Redis) -> None:
    # A Redis that does not answer: the writer must neither block play nor lose count.
    dead = redis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.05)
    writer = ReplayWriter(dead, KEY, COUNTER, capacity=100, batch_size=4, queue_size=10)
    codec = TransitionCodec()
    entries = [codec.encode(vector_transition("a", step)) for step in range(100)]

    def add_all() -> None:
        for entry in entries:
            writer.add(entry)

    # Nothing leaves the queue while Redis is dead: a blocking add would never return.
    finishes(add_all)
    # The writer thread holds at most one batch (4) it keeps retrying, the queue 10: the rest
    # overflowed at once, counted by add() itself.
    assert 100 - 10 - 4 <= writer.dropped <= 100 - 10
    deadline = time.monotonic() + 20
    while writer.push_errors == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert writer.push_errors >= 1
    writer.close(timeout=0.2)
    assert writer.pushed == 0
    assert writer.dropped == 100  # every transition accounted for: overflow plus what was never pushed


def test_a_slow_agent_pushes_in_batches_and_close_pushes_the_one_gathering(redis_client: redis.Redis) -> None:
    codec = TransitionCodec()
    redis_client.config_resetstat()
    writer = ReplayWriter(redis_client, KEY, COUNTER, capacity=1000, batch_size=64, linger_seconds=0.2)
    for step in range(20):  # slower than Redis: one transaction per step without the linger
        writer.add(codec.encode(vector_transition("a", step)))
        time.sleep(0.002)
    drain(writer, 20)
    assert int(redis_client.info("commandstats")["cmdstat_incrby"]["calls"]) <= 2
    writer.add(codec.encode(vector_transition("a", 20)))
    time.sleep(0.01)  # the writer has taken it and lingers for more
    writer.close()
    assert (writer.pushed, writer.dropped) == (21, 0)
    assert int(redis_client.get(COUNTER) or 0) == 21


@pytest.mark.parametrize("mode", ["mirror", "direct"])
def test_corrupt_entries_are_skipped_and_counted(redis_client: redis.Redis, mode: str) -> None:
    codec = TransitionCodec(max_entry_bytes=100_000)
    good = [codec.encode(vector_transition("a", step)) for step in range(40)]
    junk = [b"\xff" * 50, good[0][:10], b"\x00" * 200_000]
    pipeline = redis_client.pipeline(transaction=True)
    push_transaction(pipeline, KEY, COUNTER, 1000, good + junk)
    pipeline.execute()
    sampler = (
        MirrorSampler(redis_client, KEY, COUNTER, 1000, codec)
        if mode == "mirror"
        else DirectSampler(redis_client, KEY, COUNTER, codec)
    )
    assert sampler.sync()
    rng = np.random.default_rng(0)
    drawn = 0
    for _ in range(30):
        batch = sampler.sample(8, rng)
        assert batch is not None
        drawn += len(batch.actions)
    assert drawn > 0
    if mode == "mirror":
        assert sampler.corrupt_entries == 3 and sampler.size() == 40
    else:
        assert sampler.corrupt_entries >= 1


def test_skipped_entries_are_counted_each_but_logged_at_most_once_per_interval(redis_client: redis.Redis) -> None:
    codec = TransitionCodec()
    foreign = [b"\xff" * 50] * 5_000
    pipeline = redis_client.pipeline(transaction=True)
    push_transaction(pipeline, KEY, COUNTER, 10_000, foreign)
    pipeline.execute()
    lines: list[str] = []
    sink = logger.add(lambda message: lines.append(str(message)), level="WARNING", format="{message}")
    try:
        mirror = MirrorSampler(redis_client, KEY, COUNTER, 10_000, codec)
        assert mirror.sync()
    finally:
        logger.remove(sink)
    assert mirror.corrupt_entries == 5_000
    assert len(lines) == 1 and "skipped a replay entry on pull (1 so far)" in lines[0]


class RecordingIndexSampler:
    """Uniform draws that remember which slots the mirror reported as written."""

    def __init__(self) -> None:
        self.written: list[tuple[int, int, int]] = []

    def added(self, first_slot: int, count: int, capacity: int) -> None:
        self.written.append((first_slot, count, capacity))

    def sample(self, size: int, batch_size: int, rng: np.random.Generator) -> npt.NDArray[np.int64]:
        return np.arange(batch_size, dtype=np.int64)


def test_the_mirror_tells_its_index_sampler_which_slots_a_pull_wrote_and_draws_its_rows(
    redis_client: redis.Redis,
) -> None:
    codec = TransitionCodec()
    writer = ReplayWriter(redis_client, KEY, COUNTER, 1000)
    index_sampler = RecordingIndexSampler()
    # Pulls may go to another connection than pushes (a read replica); here a second client.
    pull_client = redis.Redis(connection_pool=redis.ConnectionPool(**redis_client.connection_pool.connection_kwargs))
    mirror = MirrorSampler(pull_client, KEY, COUNTER, 8, codec, index_sampler=index_sampler)
    for step in range(5):
        writer.add(codec.encode(vector_transition("a", step)))
    drain(writer, 5)
    assert mirror.sync()
    for step in range(5, 11):
        writer.add(codec.encode(vector_transition("a", step)))
    drain(writer, 11)
    writer.close()
    assert mirror.sync()
    assert index_sampler.written == [(0, 5, 8), (5, 6, 8)]  # the second pull wraps the ring of 8
    batch = mirror.sample(3, np.random.default_rng(0))
    assert batch is not None and batch.indices is not None
    assert batch.indices.tolist() == [0, 1, 2]
    assert batch.observations[:, 0].tolist() == [8.0, 9.0, 10.0]  # slots 0-2 now hold steps 8-10


def frame_stack_transitions(count: int, seed: int = 0) -> list[Transition]:
    """Consecutive Pong-shaped stacks: each next state is the state shifted by one new frame."""
    frames = np.random.default_rng(seed).integers(0, 256, size=(count + 4, 84, 84), dtype=np.uint8)
    return [
        Transition(
            frames[step : step + 4],
            step % 6,
            float(step),
            frames[step + 1 : step + 5],
            False,
            False,
            "A",
            0,
            step,
            step,
        )
        for step in range(count)
    ]


def test_the_writer_thread_pushes_the_bytes_play_would_have_encoded(redis_client: redis.Redis) -> None:
    codec = TransitionCodec()
    transitions = frame_stack_transitions(20)
    writer = ReplayWriter(redis_client, KEY, COUNTER, capacity=1000, batch_size=8, codec=TransitionCodec())
    for transition in transitions:
        writer.add_transition(transition)
    drain(writer, 20)
    writer.close()
    assert list(reversed(stored(redis_client))) == [codec.encode(transition) for transition in transitions]


def test_a_mirror_smaller_than_a_pull_keeps_the_newest_rows_in_ring_order(redis_client: redis.Redis) -> None:
    codec = TransitionCodec()
    transitions = frame_stack_transitions(23)
    writer = ReplayWriter(redis_client, KEY, COUNTER, capacity=1000, batch_size=64, codec=TransitionCodec())
    mirror = MirrorSampler(redis_client, KEY, COUNTER, 8, codec, pull_chunk=5)
    for start, end in ((0, 6), (6, 23)):  # the second pull wraps the ring and skips what it cannot hold
        for transition in transitions[start:end]:
            writer.add_transition(transition)
        drain(writer, end)
        assert mirror.sync()
    writer.close()
    store = mirror._store
    assert store is not None and store.size == 8 and not store.dense
    ring_order = np.roll(np.arange(8), -store.cursor)
    assert store.timestamps_ns[ring_order].tolist() == list(range(15, 23))
    batch = store.gather(ring_order, codec)
    for row, step in enumerate(range(15, 23)):
        assert np.array_equal(batch.observations[row], transitions[step].state)
        assert np.array_equal(batch.next_observations[row], transitions[step].next_state)
        assert batch.actions[row] == transitions[step].action


def test_a_transition_that_cannot_be_encoded_is_dropped_and_counted(redis_client: redis.Redis) -> None:
    writer = ReplayWriter(redis_client, KEY, COUNTER, capacity=100, batch_size=4, codec=TransitionCodec())
    good = vector_transition("a", 1)
    mismatched = Transition(good.state, 0, 0.0, np.zeros(3, np.float32), False, False, "a", 0, 2, 0)
    writer.add_transition(mismatched)
    writer.add_transition(good)
    drain(writer, 1)
    writer.close()
    assert (writer.encode_errors, writer.dropped, writer.pushed) == (1, 1, 1)
    assert TransitionCodec().decode(stored(redis_client)[0]).step == 1


def test_add_transition_without_a_codec_is_refused(redis_client: redis.Redis) -> None:
    writer = ReplayWriter(redis_client, KEY, COUNTER, capacity=100)
    with pytest.raises(ValueError, match="codec"):
        writer.add_transition(vector_transition("a", 1))
    writer.close()
