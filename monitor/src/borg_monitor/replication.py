"""How far the read replicas of the hive's Redis lag behind it, from the primary's INFO replication."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class ReplicaLag:
    """One replica as its primary sees it.

    Attributes:
        address: the replica's `ip:port`, as it announced itself.
        state: `online` once synced; `wait_bgsave` / `send_bulk` during a full sync.
        lag_bytes: replication stream the replica has not acknowledged yet
            (the primary's master_repl_offset minus the replica's offset).
        lag_seconds: seconds since the replica's last acknowledgement (about 1 s apart when idle).
    """

    address: str
    state: str
    lag_bytes: int
    lag_seconds: int


def replica_lags(replication: Mapping[str, Any]) -> tuple[ReplicaLag, ...]:
    """The replicas in INFO replication of a primary (as redis-py parses it); none for a replica."""
    if replication.get("role") != "master":
        return ()
    primary_offset = int(replication.get("master_repl_offset", 0))
    lags = []
    for index in range(int(replication.get("connected_slaves", 0))):
        replica = replication.get(f"slave{index}")
        if not isinstance(replica, Mapping):
            continue  # a line redis-py could not parse: reported by connected_replicas alone
        lags.append(
            ReplicaLag(
                address=f"{replica.get('ip', '?')}:{replica.get('port', '?')}",
                state=str(replica.get("state", "unknown")),
                lag_bytes=max(0, primary_offset - int(replica.get("offset", 0))),
                lag_seconds=max(0, int(replica.get("lag", 0))),
            )
        )
    return tuple(lags)


def replication_fields(replicas: tuple[ReplicaLag, ...], connected_replicas: int) -> dict[str, Any]:
    """The memory_monitoring fields of the replicas: how many, how many synced, the worst lags.

    Flat numbers rather than one entry per replica: they index and plot as they are, and the
    worst replica is the one that bounds how fresh the agents' mirrors can be.
    """
    return {
        "connected_replicas": connected_replicas,
        "replicas_online": sum(1 for replica in replicas if replica.state == "online"),
        "replica_max_lag_bytes": max((replica.lag_bytes for replica in replicas), default=None),
        "replica_max_lag_seconds": max((replica.lag_seconds for replica in replicas), default=None),
    }
