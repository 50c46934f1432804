"""A sample side straight from Redis: pipelined random LINDEX (O(N) in Redis per sample).

Kept to compare with the mirror (`CONFIG_replay_sampling=direct`).
"""

from __future__ import annotations

import numpy as np
import redis
from borg_common.throttle import ThrottledLog

from borg_game.codec import CorruptTransitionError, ObservationSpec, TransitionCodec
from borg_game.replay import ReplayBatch, padded_later_rewards


class _BatchAssembler:
    """Decodes stored entries into preallocated batch arrays, skipping corrupt and foreign ones."""

    def __init__(self, codec: TransitionCodec) -> None:
        self._codec = codec
        self.corrupt = 0
        self.expected: ObservationSpec | None = None  # None: any shape
        self._skipped = ThrottledLog(5.0)

    def assemble(self, entries: list[bytes]) -> ReplayBatch | None:
        decoded = []
        for entry in entries:
            try:
                transition = self._codec.decode(entry)
                observed = ObservationSpec(transition.state.shape, transition.state.dtype)
                if self.expected is not None and observed != self.expected:
                    raise CorruptTransitionError(f"observation {observed} differs from this agent's {self.expected}")
                decoded.append(transition)
            except CorruptTransitionError as error:
                self.corrupt += 1
                self._skipped.warning("skipped a corrupt replay entry ({} so far): {}", self.corrupt, error)
        if not decoded:
            return None
        n_step = padded_later_rewards([item.later_rewards for item in decoded])
        return ReplayBatch(
            observations=np.stack([item.state for item in decoded]),
            actions=np.fromiter((item.action for item in decoded), dtype=np.int64, count=len(decoded)),
            rewards=np.fromiter((item.reward for item in decoded), dtype=np.float32, count=len(decoded)),
            next_observations=np.stack([item.next_state for item in decoded]),
            terminated=np.fromiter((item.terminated for item in decoded), dtype=np.float32, count=len(decoded)),
            timestamps_ns=np.fromiter((item.timestamp_ns for item in decoded), dtype=np.int64, count=len(decoded)),
            later_rewards=None if n_step is None else n_step[0],
            spans=None if n_step is None else n_step[1],
        )


class DirectSampler:
    """Samples straight from the Redis list with pipelined random LINDEX (for comparison)."""

    def __init__(self, client: redis.Redis, key: str, counter_key: str, codec: TransitionCodec) -> None:
        self._client = client
        self._key = key
        self._counter_key = counter_key
        self._length = 0
        self._pushed = 0
        self._assembler = _BatchAssembler(codec)
        self._unreachable = ThrottledLog(5.0)

    @property
    def hive_pushed(self) -> int:
        """The hive's push counter as of the last sync."""
        return self._pushed

    @property
    def corrupt_entries(self) -> int:
        """Entries skipped as undecodable."""
        return self._assembler.corrupt

    def expect(self, spec: ObservationSpec) -> None:
        """Skip (and count) drawn entries whose observations are not of `spec`."""
        self._assembler.expected = spec

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
            self._unreachable.warning("direct replay sampler could not reach Redis: {}", error)
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
            self._unreachable.warning("direct replay sample failed: {}", error)
            return None
        # Entries past the end (the list shrank since `sync`) are left out, not replaced by copies.
        return self._assembler.assemble(entries)
