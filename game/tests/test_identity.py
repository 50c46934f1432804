"""Stable agent indices: leases in a real Redis."""

from __future__ import annotations

import os
import subprocess

import redis
from borg_common.redis_keys import agent_lease_key

from borg_game.identity import IndexLease, claim_agent_index, lease_holder

RUN = "run"
TTL = 30


def test_new_hosts_take_the_lowest_free_indices(redis_client: redis.Redis) -> None:
    assert [claim_agent_index(redis_client, RUN, host, TTL) for host in ("a", "b", "c")] == [0, 1, 2]


def test_a_restarted_host_gets_its_own_index_back_even_before_its_lease_expired(redis_client: redis.Redis) -> None:
    first = claim_agent_index(redis_client, RUN, "a", TTL)
    claim_agent_index(redis_client, RUN, "b", TTL)
    # "a" crashed without releasing: its lease, naming a process that is gone, still holds.
    redis_client.set(agent_lease_key(RUN, first), lease_holder("a", pid=gone_pid()), ex=TTL)
    assert claim_agent_index(redis_client, RUN, "a", TTL) == first


def test_two_live_processes_of_one_host_get_distinct_indices(redis_client: redis.Redis) -> None:
    first = claim_agent_index(redis_client, RUN, "a", TTL)
    redis_client.set(agent_lease_key(RUN, first), lease_holder("a", pid=os.getppid()), ex=TTL)  # alive
    assert claim_agent_index(redis_client, RUN, "a", TTL) == first + 1


def gone_pid() -> int:
    """The pid of a process that has exited."""
    child = subprocess.Popen(["true"])
    child.wait()
    return child.pid


def test_after_down_and_up_new_hosts_take_the_released_indices_again(redis_client: redis.Redis) -> None:
    leases = [IndexLease(redis_client, RUN, host, TTL) for host in ("old-a", "old-b")]
    for lease in leases:
        lease.release()
    assert sorted(claim_agent_index(redis_client, RUN, host, TTL) for host in ("new-a", "new-b")) == [0, 1]


def test_a_scaled_up_replica_takes_the_next_free_index(redis_client: redis.Redis) -> None:
    claim_agent_index(redis_client, RUN, "a", TTL)
    claim_agent_index(redis_client, RUN, "b", TTL)
    assert claim_agent_index(redis_client, RUN, "c", TTL) == 2


def test_a_host_whose_index_another_holds_takes_a_free_one(redis_client: redis.Redis) -> None:
    lease = IndexLease(redis_client, RUN, "a", TTL)
    lease.release()
    assert claim_agent_index(redis_client, RUN, "b", TTL) == 0  # took a's released index
    assert claim_agent_index(redis_client, RUN, "a", TTL) == 1


def test_runs_count_their_indices_apart(redis_client: redis.Redis) -> None:
    assert claim_agent_index(redis_client, "one", "a", TTL) == 0
    assert claim_agent_index(redis_client, "two", "b", TTL) == 0


def test_a_lease_expires_with_its_ttl_and_renewal_extends_it(redis_client: redis.Redis) -> None:
    lease = IndexLease(redis_client, RUN, "a", TTL)
    key = agent_lease_key(RUN, lease.index)
    assert 0 < int(redis_client.ttl(key)) <= TTL
    redis_client.expire(key, 5)
    assert lease.renew()
    assert int(redis_client.ttl(key)) > 5
    lease.release()
    assert redis_client.get(key) is None


def test_renewal_reports_a_lease_another_host_took_and_release_leaves_it_alone(redis_client: redis.Redis) -> None:
    lease = IndexLease(redis_client, RUN, "a", TTL)
    key = agent_lease_key(RUN, lease.index)
    redis_client.set(key, "b/1", ex=TTL)  # a's lease expired while it stalled; b claimed the index
    assert not lease.renew()
    lease.release()
    assert redis_client.get(key) == b"b/1"
