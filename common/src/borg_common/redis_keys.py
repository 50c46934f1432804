"""The hive's Redis key contract: every key name any service reads or writes, in one place.

- `transitions` (setting `replay_key`): list of protobuf Transition bytes, newest first.
- `transitions:pushed` (setting `push_counter_key`): how many transitions were ever pushed.
- `borg:agent_index`: counter handing out agent indices to agents started without one.
- `borg:status:<run_id>:<agent_id>`: an agent's latest status (JSON, expires), for the
  local hive's console view and the monitor's count of live agents.

The compose file's Redis ACLs (compose.yaml) grant exactly these keys.
"""

from __future__ import annotations

DEFAULT_REPLAY_KEY = "transitions"
DEFAULT_PUSH_COUNTER_KEY = "transitions:pushed"
AGENT_INDEX_KEY = "borg:agent_index"
STATUS_KEY_PREFIX = "borg:status:"


def status_key(run_id: str, agent_id: str) -> str:
    """Where the agent `agent_id` of run `run_id` publishes its status."""
    return f"{STATUS_KEY_PREFIX}{run_id}:{agent_id}"


def status_pattern(run_id: str) -> str:
    """A SCAN pattern matching the status keys of every agent of run `run_id`."""
    return f"{STATUS_KEY_PREFIX}{run_id}:*"
