"""The hive's shared replay memory: one Redis list, a write side and two sample sides.

Layout in Redis (every agent of the hive agrees on it):
- `replay_key`: a list of protobuf `Transition` bytes, newest at the head (LPUSH), trimmed
  to `capacity` with LTRIM;
- `push_counter_key`: how many transitions were ever pushed, incremented in the same
  MULTI/EXEC as the LPUSH. So the entry at list index i has sequence number `counter - i`,
  which lets a reader fetch exactly the entries it has not seen yet with one LRANGE.

Write side: `ReplayWriter` pushes from a background thread so that play never waits on
Redis; its queue is bounded, and what overflows is counted and logged, never silently lost.
Sample side: `MirrorSampler` (default) keeps a local copy of the hive's newest transitions,
pulled incrementally, and samples it locally in O(1) per transition; `DirectSampler` samples
straight from Redis with pipelined random LINDEX (O(N) in Redis per sample, kept to compare).
"""

from __future__ import annotations

import queue
import threading
import time
from typing import NamedTuple, Protocol

import numpy as np
import numpy.typing as npt
import redis
from loguru import logger

from borg_game import transition_pb2 as pb
from borg_game.codec import CorruptTransitionError, ObservationSpec, TransitionCodec
from borg_game.pull_script import PullScript


class ReplayBatch(NamedTuple):
    """A minibatch as numpy arrays, first axis the batch."""

    observations: npt.NDArray[np.generic]
    actions: npt.NDArray[np.int64]
    rewards: npt.NDArray[np.float32]
    next_observations: npt.NDArray[np.generic]
    terminated: npt.NDArray[np.float32]
    timestamps_ns: npt.NDArray[np.int64]


class ReplaySampler(Protocol):
    """The sample side of the replay memory."""

    def sync(self) -> bool:
        """Bring the sampler up to date with Redis; False when Redis could not be reached."""
        ...

    def size(self) -> int:
        """How many transitions the sampler can draw from."""
        ...

    def sample(self, batch_size: int, rng: np.random.Generator) -> ReplayBatch | None:
        """A batch of distinct draws, or None when there is not enough to draw from."""
        ...

    @property
    def hive_pushed(self) -> int:
        """The hive's push counter as last seen: transitions pushed by all agents."""
        ...

    @property
    def corrupt_entries(self) -> int:
        """Stored entries skipped because they could not be decoded."""
        ...


def push_transaction(
    pipeline: redis.client.Pipeline, key: str, counter_key: str, capacity: int, entries: list[bytes]
) -> None:
    """Queue one push of `entries` (oldest first) on a MULTI/EXEC pipeline."""
    pipeline.lpush(key, *entries)
    pipeline.ltrim(key, 0, capacity - 1)
    pipeline.incrby(counter_key, len(entries))


class ReplayWriter:
    """Pushes encoded transitions to Redis in batches from a background thread.

    A batch is `batch_size` transitions or what `linger_seconds` after its first one brought.
    """

    def __init__(
        self,
        client: redis.Redis,
        key: str,
        counter_key: str,
        capacity: int,
        batch_size: int = 64,
        queue_size: int = 10_000,
        linger_seconds: float = 0.05,
    ) -> None:
        self._client = client
        self._key = key
        self._counter_key = counter_key
        self._capacity = capacity
        self._batch_size = batch_size
        self._linger_seconds = linger_seconds
        self._queue: queue.Queue[bytes] = queue.Queue(maxsize=queue_size)
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self.pushed = 0
        self.dropped = 0
        self.push_errors = 0
        self._in_flight = 0  # taken from the queue, not yet acknowledged by Redis
        self._last_drop_log = 0.0
        self._thread = threading.Thread(target=self._run, name="replay-writer", daemon=True)
        self._thread.start()

    def add(self, entry: bytes) -> None:
        """Queue one encoded transition; never blocks. A full queue drops it, counted and logged."""
        try:
            self._queue.put_nowait(entry)
        except queue.Full:
            with self._lock:
                self.dropped += 1
            now = time.monotonic()
            if now - self._last_drop_log > 5.0:
                self._last_drop_log = now
                logger.warning(
                    "replay push queue full ({} waiting): {} transitions dropped so far; is Redis reachable?",
                    self._queue.maxsize,
                    self.dropped,
                )

    @property
    def pending(self) -> int:
        """Transitions queued and not yet pushed."""
        return self._queue.qsize()

    def close(self, timeout: float = 5.0) -> None:
        """Push what is queued (waiting at most `timeout` seconds), then stop the thread.

        What could not be pushed by then is added to `dropped` and logged.
        """
        deadline = time.monotonic() + timeout
        while (self._queue.qsize() or self._in_flight) and time.monotonic() < deadline and self._thread.is_alive():
            time.sleep(0.01)
        self._stop.set()
        self._thread.join(max(0.0, deadline - time.monotonic()) + 1.0)
        with self._lock:
            unpushed = self._queue.qsize() + self._in_flight
            self.dropped += unpushed
            self._in_flight = 0
        while not self._queue.empty():
            self._queue.get_nowait()
        if unpushed:
            logger.warning("replay writer closed with {} transitions not pushed (dropped: {})", unpushed, self.dropped)

    def _next_batch(self) -> list[bytes]:
        try:
            batch = [self._queue.get(timeout=0.05)]
        except queue.Empty:
            return []
        with self._lock:
            self._in_flight = 1  # taken: close() must wait for it while the batch gathers
        if self._queue.qsize() < self._batch_size - 1:
            # Let a batch gather (at most linger_seconds): an agent plays slower than Redis takes
            # pushes, and without this wait every step became a transaction of its own, a round
            # trip and ~100 us of this thread's time (holding the GIL) per step of play.
            self._stop.wait(self._linger_seconds)
        while len(batch) < self._batch_size:
            try:
                batch.append(self._queue.get_nowait())
            except queue.Empty:
                break
        return batch

    def _run(self) -> None:
        backoff = 0.1
        while not self._stop.is_set():
            batch = self._next_batch()
            if not batch:
                continue
            with self._lock:
                self._in_flight = len(batch)
            while not self._stop.is_set():
                try:
                    pipeline = self._client.pipeline(transaction=True)
                    push_transaction(pipeline, self._key, self._counter_key, self._capacity, batch)
                    pipeline.execute()
                except Exception as error:
                    with self._lock:
                        self.push_errors += 1
                    if not isinstance(error, redis.RedisError):
                        logger.opt(exception=error).error("unexpected error pushing to Redis; retrying")
                    elif isinstance(error, redis.exceptions.OutOfMemoryError) or "maxmemory" in str(error):
                        logger.error(
                            "Redis is out of memory (maxmemory reached, noeviction): {} transitions wait, retrying "
                            "in {:.1f}s; lower CONFIG_replay_capacity or raise Redis maxmemory",
                            len(batch) + self._queue.qsize(),
                            backoff,
                        )
                    else:
                        logger.warning(
                            "replay push of {} transitions failed ({}); retrying in {:.1f}s", len(batch), error, backoff
                        )
                    self._stop.wait(backoff)
                    backoff = min(backoff * 2, 5.0)
                    continue
                with self._lock:
                    self.pushed += len(batch)
                    self._in_flight = 0
                backoff = 0.1
                break


class _BatchAssembler:
    """Decodes stored entries into preallocated batch arrays, skipping corrupt ones."""

    def __init__(self, codec: TransitionCodec) -> None:
        self._codec = codec
        self.corrupt = 0

    def assemble(self, entries: list[bytes]) -> ReplayBatch | None:
        decoded = []
        for entry in entries:
            try:
                decoded.append(self._codec.decode(entry))
            except CorruptTransitionError as error:
                self.corrupt += 1
                logger.warning("skipped a corrupt replay entry: {}", error)
        if not decoded:
            return None
        return ReplayBatch(
            observations=np.stack([item.state for item in decoded]),
            actions=np.fromiter((item.action for item in decoded), dtype=np.int64, count=len(decoded)),
            rewards=np.fromiter((item.reward for item in decoded), dtype=np.float32, count=len(decoded)),
            next_observations=np.stack([item.next_state for item in decoded]),
            terminated=np.fromiter((item.terminated for item in decoded), dtype=np.float32, count=len(decoded)),
            timestamps_ns=np.fromiter((item.timestamp_ns for item in decoded), dtype=np.int64, count=len(decoded)),
        )


class _MirrorStore:
    """The mirror's ring of transitions, column by column, like SB3's preallocated buffers.

    Scalars live in numpy columns. Small observations (vectors) are decoded once on pull into
    dense arrays; large ones (frame stacks) stay zstd-compressed, since decoded Pong stacks
    would cost 56 KB a transition, and are decompressed straight into the batch on sample.
    """

    DENSE_LIMIT_BYTES = 1024

    def __init__(self, capacity: int, spec: ObservationSpec) -> None:
        self.capacity = capacity
        self.spec = spec
        self.size = 0
        self.cursor = 0
        self.actions = np.zeros(capacity, dtype=np.int64)
        self.rewards = np.zeros(capacity, dtype=np.float32)
        self.terminated = np.zeros(capacity, dtype=np.float32)
        self.timestamps_ns = np.zeros(capacity, dtype=np.int64)
        self.dense = spec.nbytes <= self.DENSE_LIMIT_BYTES
        if self.dense:
            self.states = np.zeros((capacity, *spec.shape), dtype=spec.dtype)
            self.next_states = np.zeros((capacity, *spec.shape), dtype=spec.dtype)
        else:
            self.state_blobs: list[bytes] = [b""] * capacity
            self.next_blobs: list[bytes] = [b""] * capacity
            self.codecs = np.zeros(capacity, dtype=np.int8)
            self.layouts = np.zeros(capacity, dtype=np.int8)

    def append(self, message: pb.Transition, codec: TransitionCodec) -> None:
        slot = self.cursor
        if self.dense:
            codec.fill(
                message.codec,
                message.next_state_layout,
                message.state,
                message.next_state,
                self.states[slot],
                self.next_states[slot],
            )
        else:
            self.state_blobs[slot] = message.state
            self.next_blobs[slot] = message.next_state
            self.codecs[slot] = message.codec
            self.layouts[slot] = message.next_state_layout
        self.actions[slot] = message.action
        self.rewards[slot] = message.reward
        self.terminated[slot] = message.terminated
        self.timestamps_ns[slot] = message.timestamp_ns
        self.cursor = (slot + 1) % self.capacity
        self.size = min(self.size + 1, self.capacity)

    def gather(self, indices: npt.NDArray[np.int64], codec: TransitionCodec) -> ReplayBatch:
        if self.dense:
            observations, next_observations = self.states[indices], self.next_states[indices]
        else:
            shape = (len(indices), *self.spec.shape)
            observations = np.empty(shape, dtype=self.spec.dtype)
            next_observations = np.empty(shape, dtype=self.spec.dtype)
            rows = indices.tolist()
            codec.fill_rows(
                self.codecs[indices].tolist(),
                self.layouts[indices].tolist(),
                [self.state_blobs[index] for index in rows],
                [self.next_blobs[index] for index in rows],
                observations,
                next_observations,
            )
        return ReplayBatch(
            observations=observations,
            actions=self.actions[indices],
            rewards=self.rewards[indices],
            next_observations=next_observations,
            terminated=self.terminated[indices],
            timestamps_ns=self.timestamps_ns[indices],
        )


class MirrorSampler:
    """A local copy of the hive's newest transitions, pulled incrementally, sampled locally.

    `client` is where pulls go: the primary, or a read replica of it (CONFIG_redis_read_url).
    """

    def __init__(
        self,
        client: redis.Redis,
        key: str,
        counter_key: str,
        capacity: int,
        codec: TransitionCodec,
        pull_chunk: int = 10_000,
        max_pull_seconds: float = 0.5,
    ) -> None:
        self._capacity = capacity
        self._codec = codec
        self._pull_chunk = pull_chunk
        self._max_pull_seconds = max_pull_seconds
        self._pull = PullScript(client, key, counter_key)
        self._store: _MirrorStore | None = None  # made at the first entry, which fixes the shape
        self._seen = 0
        self._pushed = 0
        self._corrupt = 0
        self._last_error_log = 0.0

    @property
    def hive_pushed(self) -> int:
        """The hive's push counter as of the last pull."""
        return self._pushed

    @property
    def corrupt_entries(self) -> int:
        """Entries skipped on pull: undecodable, or of another observation shape than the hive's."""
        return self._corrupt

    def size(self) -> int:
        """Transitions held locally."""
        return 0 if self._store is None else self._store.size

    def sync(self) -> bool:
        """Pull every transition pushed since the last sync (bounded by max_pull_seconds)."""
        deadline = time.monotonic() + self._max_pull_seconds
        try:
            while True:
                pushed, new_seen, entries = self._pull(self._seen, self._pull_chunk, self._capacity)
                self._pushed = pushed
                self._seen = new_seen
                # LRANGE returned newest first; the ring wants oldest first.
                for entry in reversed(entries):
                    self._append(entry)
                if self._seen >= self._pushed or time.monotonic() > deadline:
                    return True
        except redis.RedisError as error:
            now = time.monotonic()
            if now - self._last_error_log > 5.0:
                self._last_error_log = now
                logger.warning(
                    "replay mirror could not pull from Redis ({}); training on the {} transitions held",
                    error,
                    self.size(),
                )
            return False

    def _append(self, entry: bytes) -> None:
        try:
            message = self._codec.parse(entry)
            spec = self._codec.spec(message)
            if self._store is None:
                self._store = _MirrorStore(self._capacity, spec)
            elif spec is not self._store.spec and spec != self._store.spec:
                raise CorruptTransitionError(f"observation {spec} differs from the hive's {self._store.spec}")
            self._store.append(message, self._codec)
        except CorruptTransitionError as error:
            self._corrupt += 1
            logger.warning("skipped a replay entry on pull ({} so far): {}", self._corrupt, error)

    def sample(self, batch_size: int, rng: np.random.Generator) -> ReplayBatch | None:
        """Uniform draws; None while fewer than `batch_size` transitions are held."""
        store = self._store
        if store is None or store.size < batch_size:
            return None
        # Distinct within the batch while the memory is small; with replacement (much cheaper)
        # once a repeat is unlikely anyway.
        if batch_size * 50 > store.size:
            indices = rng.choice(store.size, size=batch_size, replace=False)
        else:
            indices = rng.integers(0, store.size, size=batch_size)
        return store.gather(indices.astype(np.int64), self._codec)


class DirectSampler:
    """Samples straight from the Redis list with pipelined random LINDEX (for comparison)."""

    def __init__(self, client: redis.Redis, key: str, counter_key: str, codec: TransitionCodec) -> None:
        self._client = client
        self._key = key
        self._counter_key = counter_key
        self._length = 0
        self._pushed = 0
        self._assembler = _BatchAssembler(codec)
        self._last_error_log = 0.0

    @property
    def hive_pushed(self) -> int:
        """The hive's push counter as of the last sync."""
        return self._pushed

    @property
    def corrupt_entries(self) -> int:
        """Entries skipped as undecodable."""
        return self._assembler.corrupt

    def size(self) -> int:
        """Length of the Redis list as of the last sync."""
        return self._length

    def sync(self) -> bool:
        """Read the list length and the push counter."""
        try:
            pipeline = self._client.pipeline(transaction=False)
            pipeline.llen(self._key)
            pipeline.get(self._counter_key)
            length, pushed = pipeline.execute()
        except redis.RedisError as error:
            now = time.monotonic()
            if now - self._last_error_log > 5.0:
                self._last_error_log = now
                logger.warning("direct replay sampler could not reach Redis: {}", error)
            return False
        self._length = int(length)
        self._pushed = int(pushed or 0)
        return True

    def sample(self, batch_size: int, rng: np.random.Generator) -> ReplayBatch | None:
        """Fetch `batch_size` random entries in one round trip; None while the list is too short."""
        if self._length < batch_size:
            return None
        indices = rng.choice(self._length, size=batch_size, replace=False)
        try:
            pipeline = self._client.pipeline(transaction=False)
            for index in indices:
                pipeline.lindex(self._key, int(index))
            entries = [entry for entry in pipeline.execute() if entry is not None]
        except redis.RedisError as error:
            logger.warning("direct replay sample failed: {}", error)
            return None
        # Entries past the end (the list shrank since `sync`) are left out, not replaced by copies.
        return self._assembler.assemble(entries)
