"""An agent's live status: what it publishes to the hive's Redis and `make run`'s console shows.

Each agent overwrites its own key (`borg_common.redis_keys.status_key`) every
`CONFIG_status_interval` seconds with a 30 s expiry, so a dead agent leaves the view and the
monitor counts the live ones.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from enum import StrEnum

import redis
from borg_common.redis_keys import status_key, status_pattern
from borg_common.throttle import ThrottledLog

from borg_game.callbacks import AgentCallback


class AgentPhase(StrEnum):
    """What an agent is doing."""

    FILLING = "filling"  # playing until its step reaches learning_starts: no updates yet
    LEARNING = "learning"  # playing and updating its network
    EVALUATING = "evaluating"  # playing evaluation episodes: no steps, no updates
    PLAYING = "playing"  # CONFIG_learning is off: it plays and shares only


@dataclass(frozen=True)
class AgentStatus:
    """One agent's progress as of `updated`.

    Attributes:
        agent_id: the agent.
        phase: what it is doing.
        step: environment steps it has played.
        learning_starts: the step from which it learns (CONFIG_learning_starts).
        total_steps: the step at which it stops (CONFIG_total_steps).
        episodes: episodes it has finished.
        last_return: the last episode's real score; None before the first.
        mean_return: mean score of the last 100 episodes; None before the first.
        steps_per_second: its environment steps per second over about the last
            `step_rate.RATE_WINDOW_SECONDS` (since it started, when that is more recent).
        epsilon: its current exploration rate.
        replay_size: transitions it samples from (local mirror or Redis list).
        hive_pushed: the hive's push counter as last seen.
        last_eval: the last evaluation's mean score; None before the first.
        best_eval: its best evaluation's mean score, kept across resumes; None before the first.
        dropped: transitions its writer dropped (queue full, or unpushed at exit).
        push_errors: failed push attempts to Redis (each retried).
        corrupt_entries: stored entries it skipped as undecodable or of another shape.
        updated: when it was made (Unix time).
    """

    agent_id: str
    phase: AgentPhase = AgentPhase.FILLING
    step: int = 0
    learning_starts: int = 0
    total_steps: int = 0
    episodes: int = 0
    last_return: float | None = None
    mean_return: float | None = None
    steps_per_second: float = 0.0
    epsilon: float = 0.0
    replay_size: int = 0
    hive_pushed: int = 0
    last_eval: float | None = None
    best_eval: float | None = None
    dropped: int = 0
    push_errors: int = 0
    corrupt_entries: int = 0
    updated: float = 0.0

    def to_json(self) -> str:
        """The status as one JSON object."""
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, raw: str | bytes) -> AgentStatus:
        """Parse a published status; fields this version does not know are left out.

        Raises ValueError for a phase this version does not know.
        """
        known = {field.name for field in fields(cls)}
        values = {name: value for name, value in json.loads(raw).items() if name in known}
        if "phase" in values:
            values["phase"] = AgentPhase(values["phase"])
        return cls(**values)


class StatusBoard(AgentCallback):
    """Publishes this agent's latest status to the hive's Redis."""

    def __init__(self, client: redis.Redis, run_id: str, agent_id: str, ttl_seconds: int = 30) -> None:
        self._client = client
        self._key = status_key(run_id, agent_id)
        self._ttl = ttl_seconds
        self._unreachable = ThrottledLog(30.0)

    def on_report(self, status: AgentStatus) -> None:
        """Overwrite the status, expiring it so a dead agent leaves the view."""
        try:
            self._client.set(self._key, status.to_json(), ex=self._ttl)
        except redis.RedisError as error:
            self._unreachable.warning("could not publish agent status to Redis: {}", error)


def read_statuses(client: redis.Redis, run_id: str) -> list[AgentStatus]:
    """All live agents' statuses of a run, ordered by agent id."""
    statuses = []
    for key in client.scan_iter(match=status_pattern(run_id), count=1000):
        raw = client.get(key)
        if raw:
            statuses.append(AgentStatus.from_json(raw))
    return sorted(statuses, key=lambda status: status.agent_id)
