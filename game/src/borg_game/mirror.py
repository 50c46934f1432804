"""The default sample side: a local mirror of the hive's newest transitions, pulled
incrementally from Redis and sampled locally in O(1) per transition.

The pull (`pull_script.PullScript`) runs one read-only script on the client it is given,
which may be a Redis read replica (CONFIG_redis_read_url) while the writer pushes to the primary.
"""

from __future__ import annotations

import time

import numpy as np
import redis
from borg_common.throttle import ThrottledLog

from borg_game.codec import CorruptTransitionError, ObservationSpec, TransitionCodec
from borg_game.mirror_store import IndexSampler, MirrorStore, UniformIndexSampler
from borg_game.pull_script import PullScript
from borg_game.replay import ReplayBatch


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
        index_sampler: IndexSampler | None = None,
    ) -> None:
        self._index_sampler: IndexSampler = index_sampler or UniformIndexSampler()
        self._capacity = capacity
        self._codec = codec
        self._pull_chunk = pull_chunk
        self._max_pull_seconds = max_pull_seconds
        self._pull = PullScript(client, key, counter_key)
        # Made by `expect` (the agent's env fixes the shape), else at the first entry pulled.
        self._store: MirrorStore | None = None
        self._seen = 0
        self._pushed = 0
        self._corrupt = 0
        self._unreachable = ThrottledLog(5.0)
        self._skipped = ThrottledLog(5.0)

    @property
    def hive_pushed(self) -> int:
        """The hive's push counter as of the last pull."""
        return self._pushed

    @property
    def corrupt_entries(self) -> int:
        """Entries skipped on pull: undecodable, or of another observation shape than the hive's."""
        return self._corrupt

    def expect(self, spec: ObservationSpec) -> None:
        """Hold only observations of `spec`, the agent's own env's; other entries are skipped and counted."""
        if self._store is None or self._store.spec != spec:
            self._store = MirrorStore(self._capacity, spec)

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
                store = self._store
                spec = None if store is None else store.spec
                columns = self._codec.stored_columns(reversed(entries), spec, self._skip)
                if columns is not None and len(columns):
                    if store is None:  # made by the first entry, unless `expect` made it
                        store = self._store = MirrorStore(self._capacity, columns.spec)
                    first_slot = store.extend(columns, self._codec)
                    self._index_sampler.added(first_slot, min(len(columns), self._capacity), self._capacity)
                if self._seen >= self._pushed or time.monotonic() > deadline:
                    return True
        except redis.RedisError as error:
            self._unreachable.warning(
                "replay mirror could not pull from Redis ({}); training on the {} transitions held", error, self.size()
            )
            return False

    def _skip(self, error: CorruptTransitionError) -> None:
        """An entry left out of a pull: undecodable, or of another observation spec than the store's."""
        self._corrupt += 1
        self._skipped.warning("skipped a replay entry on pull ({} so far): {}", self._corrupt, error)

    def sample(self, batch_size: int, rng: np.random.Generator) -> ReplayBatch | None:
        """Draws of the index sampler (uniform by default); None while fewer than `batch_size` are held."""
        store = self._store
        if store is None or store.size < batch_size:
            return None
        return store.gather(self._index_sampler.sample(store.size, batch_size, rng), self._codec)
