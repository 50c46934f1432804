"""A stable agent index for agents started without one (`docker compose up --scale game=N`).

An agent holds its index by a lease in Redis (`borg_common.redis_keys.agent_lease_key`): a
key that names the holder's host and expires unless renewed. Claiming, in order:

1. the index this host last held (`agent_host_key`), when its lease is free or held by a
   process of this host that is gone (the lease names host and pid): a container restarted
   by compose keeps its host name, so it gets its index, and with it its agent id, seed and
   checkpoints, back; two live processes of one host never share an index;
2. else the lowest index whose lease is free (`SET NX EX`): after `docker compose down` and
   `up` the new containers, whose host names are new, take 0..N-1 again; a replica added by
   `--scale` takes the next free one.

`IndexLease` renews the lease from a daemon thread every third of its time to live and
deletes it on a clean exit, so the index is free at once for the next start. A host whose
lease expired while it stalled keeps running with its index and says so once; the next
claimer may then share it until this agent stops.
"""

from __future__ import annotations

import itertools
import os
import threading
from types import TracebackType

import redis
from borg_common.redis_keys import agent_host_key, agent_lease_key
from borg_common.throttle import ThrottledLog
from loguru import logger

# How long the host -> index note outlives its last claim: beyond it a returning host is new.
HOST_MEMORY_SECONDS = 30 * 24 * 3600

# Renew the lease only while we still hold it; delete it only if it is ours.
_RENEW_SCRIPT = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2]) and 1 or 0
end
return 0
"""
_RELEASE_SCRIPT = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


def _decoded(value: bytes | str | None) -> str | None:
    return value.decode() if isinstance(value, bytes) else value


def lease_holder(hostname: str, pid: int | None = None) -> str:
    """The value of a lease: the host and the process holding it."""
    return f"{hostname}/{os.getpid() if pid is None else pid}"


def _held_by_a_dead_process_of(holder: str | None, hostname: str) -> bool:
    # A lease of this host whose process is gone: a crash, restarted (a container restarted
    # by compose keeps its host name and often its pid, which is then this very process).
    if holder is None or not holder.startswith(f"{hostname}/"):
        return False
    pid = holder[len(hostname) + 1 :]
    if not pid.isdigit():
        return False
    if int(pid) == os.getpid():  # a restarted container's agent often has the pid of the last one
        return True
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # alive, another user's
        return False
    return False


def claim_agent_index(client: redis.Redis, run_id: str, hostname: str, ttl_seconds: int) -> int:
    """Claim an index for this process on `hostname` in run `run_id`: the host's previous one if
    free (or held by a dead process of this host), else the lowest free one."""
    holder = lease_holder(hostname)
    previous = _decoded(client.get(agent_host_key(run_id, hostname)))
    if previous is not None and previous.isdigit():
        index = int(previous)
        lease = agent_lease_key(run_id, index)
        if client.set(lease, holder, nx=True, ex=ttl_seconds) or _held_by_a_dead_process_of(
            _decoded(client.get(lease)), hostname
        ):
            return _remember(client, run_id, hostname, holder, index, ttl_seconds)
    for index in itertools.count():
        if client.set(agent_lease_key(run_id, index), holder, nx=True, ex=ttl_seconds):
            return _remember(client, run_id, hostname, holder, index, ttl_seconds)
    raise AssertionError("unreachable: itertools.count() never ends")


def _remember(client: redis.Redis, run_id: str, hostname: str, holder: str, index: int, ttl_seconds: int) -> int:
    client.set(agent_lease_key(run_id, index), holder, ex=ttl_seconds)
    client.set(agent_host_key(run_id, hostname), index, ex=HOST_MEMORY_SECONDS)
    return index


class IndexLease:
    """Holds a claimed index while the agent runs: renews it in the background, releases it on exit."""

    def __init__(self, client: redis.Redis, run_id: str, hostname: str, ttl_seconds: int) -> None:
        self.index = claim_agent_index(client, run_id, hostname, ttl_seconds)
        self._client = client
        self._key = agent_lease_key(run_id, self.index)
        self._holder = lease_holder(hostname)
        self._ttl = ttl_seconds
        self._renew = client.register_script(_RENEW_SCRIPT)
        self._release = client.register_script(_RELEASE_SCRIPT)
        self._stop = threading.Event()
        self._lost_said = False
        self._unreachable = ThrottledLog(60.0)
        self._thread = threading.Thread(target=self._keep, name="index-lease", daemon=True)
        self._thread.start()

    def _keep(self) -> None:
        while not self._stop.wait(self._ttl / 3):
            self.renew()

    def renew(self) -> bool:
        """Extend the lease; False (said once) when another agent holds the index now."""
        try:
            held = bool(self._renew(keys=[self._key], args=[self._holder, self._ttl]))
        except redis.RedisError as error:
            self._unreachable.warning("could not renew the lease of agent index {}: {}", self.index, error)
            return False
        if not held and not self._lost_said:
            self._lost_said = True
            logger.warning(
                "the lease of agent index {} expired and another agent holds it now; running on with it",
                self.index,
            )
        return held

    def release(self) -> None:
        """Stop renewing and free the index (if still ours) for the next agent that starts."""
        self._stop.set()
        self._thread.join(timeout=5.0)
        try:
            self._release(keys=[self._key], args=[self._holder])
        except redis.RedisError as error:
            logger.warning("could not release agent index {} (it expires in {}s): {}", self.index, self._ttl, error)

    def __enter__(self) -> IndexLease:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.release()
