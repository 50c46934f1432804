"""The write side of the replay memory: transitions pushed to the hive's Redis in batches.

`ReplayWriter` pushes from a background thread so that play never waits on Redis; its queue
is bounded, and what overflows is counted and logged, never silently lost. Given a codec, it
also encodes there: play hands over the transition's arrays (`add_transition`), and the zstd
and protobuf work (~30 us of a Pong step) leaves the play thread; python-zstandard releases
the GIL while it compresses, so play goes on meanwhile.
"""

from __future__ import annotations

import queue
import threading
import time

import redis
from borg_common.backoff import ExponentialBackoff
from borg_common.throttle import ThrottledLog
from loguru import logger

from borg_game.codec import Transition, TransitionCodec


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
    `codec` encodes what `add_transition` queues, on the writer's thread.
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
        codec: TransitionCodec | None = None,
    ) -> None:
        self._client = client
        self._key = key
        self._counter_key = counter_key
        self._capacity = capacity
        self._batch_size = batch_size
        self._linger_seconds = linger_seconds
        self._codec = codec
        self._queue: queue.Queue[bytes | Transition] = queue.Queue(maxsize=queue_size)
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self.pushed = 0
        self.dropped = 0
        self.push_errors = 0
        self.encode_errors = 0
        self._in_flight = 0  # taken from the queue, not yet acknowledged by Redis
        self._drop_log = ThrottledLog(5.0)
        self._encode_log = ThrottledLog(5.0)
        self._thread = threading.Thread(target=self._run, name="replay-writer", daemon=True)
        self._thread.start()

    def add(self, entry: bytes) -> None:
        """Queue one encoded transition; never blocks. A full queue drops it, counted and logged."""
        self._put(entry)

    def add_transition(self, transition: Transition) -> None:
        """Queue one transition for the writer thread to encode and push; never blocks.

        The writer keeps references to the transition's arrays until it has encoded them: the
        caller must not write into them afterwards (gymnasium's wrappers return a fresh array
        every step, so an agent's observations qualify). A transition that fails to encode is
        counted in `encode_errors` and `dropped`, and logged.
        """
        if self._codec is None:
            raise ValueError("add_transition needs a ReplayWriter built with a codec; use add() for encoded bytes")
        self._put(transition)

    def _put(self, entry: bytes | Transition) -> None:
        try:
            self._queue.put_nowait(entry)
        except queue.Full:
            with self._lock:
                self.dropped += 1
            self._drop_log.warning(
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

    def _next_batch(self) -> list[bytes | Transition]:
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

    def _encoded(self, taken: list[bytes | Transition]) -> list[bytes]:
        """The batch as entries: transitions encoded here, on the writer's thread."""
        entries: list[bytes] = []
        for item in taken:
            if isinstance(item, bytes):
                entries.append(item)
                continue
            assert self._codec is not None  # add_transition refuses transitions without one
            try:
                entries.append(self._codec.encode(item))
            except Exception as error:  # one bad transition must not stop the writer thread
                with self._lock:
                    self.encode_errors += 1
                    self.dropped += 1
                self._encode_log.error(
                    "transition of agent {!r} at step {} not encoded, dropped ({} so far): {}",
                    item.agent_id,
                    item.step,
                    self.encode_errors,
                    error,
                )
        return entries

    def _run(self) -> None:
        backoff = ExponentialBackoff(initial=0.1, maximum=5.0)
        while not self._stop.is_set():
            taken = self._next_batch()
            if not taken:
                continue
            batch = self._encoded(taken)
            with self._lock:
                self._in_flight = len(batch)
            if not batch:
                continue
            while not self._stop.is_set():
                try:
                    pipeline = self._client.pipeline(transaction=True)
                    push_transaction(pipeline, self._key, self._counter_key, self._capacity, batch)
                    pipeline.execute()
                except Exception as error:
                    with self._lock:
                        self.push_errors += 1
                    delay = backoff.failed()
                    if not isinstance(error, redis.RedisError):
                        logger.opt(exception=error).error("unexpected error pushing to Redis; retrying")
                    elif isinstance(error, redis.exceptions.OutOfMemoryError) or "maxmemory" in str(error):
                        logger.error(
                            "Redis is out of memory (maxmemory reached, noeviction): {} transitions wait, retrying "
                            "in {:.1f}s; lower CONFIG_replay_capacity or raise Redis maxmemory",
                            len(batch) + self._queue.qsize(),
                            delay,
                        )
                    else:
                        logger.warning(
                            "replay push of {} transitions failed ({}); retrying in {:.1f}s", len(batch), error, delay
                        )
                    self._stop.wait(delay)
                    continue
                with self._lock:
                    self.pushed += len(batch)
                    self._in_flight = 0
                backoff.succeeded()
                break
