"""The hive's Redis key contract: every key name any service reads or writes, in one place.

- `transitions:<env_id>` (setting `replay_key`, suffixed by `env_scoped_key`): list of
  protobuf Transition bytes of one environment, newest first. One list per environment, so
  switching `CONFIG_env_id` never mixes two games' transitions.
- `transitions:pushed:<env_id>` (setting `push_counter_key`, suffixed likewise): how many
  transitions of that environment were ever pushed.
- `borg:agent:<run_id>:lease:<index>`: held (value: the holder's host name, expiring) by the
  agent running with that index; see `borg_game.identity`.
- `borg:agent:<run_id>:host:<hostname>`: the index a host (a container) last held, so a
  restarted container gets its index back.
- `borg:status:<run_id>:<agent_id>`: an agent's latest status (JSON, expires), for the
  local hive's console view and the monitor's count of live agents.

The compose file's Redis ACLs (compose.yaml) grant exactly these keys.
"""

from __future__ import annotations

DEFAULT_REPLAY_KEY = "transitions"
DEFAULT_PUSH_COUNTER_KEY = "transitions:pushed"
AGENT_KEY_PREFIX = "borg:agent:"
STATUS_KEY_PREFIX = "borg:status:"


def env_scoped_key(base: str, env_id: str) -> str:
    """The key `base` of environment `env_id`: each environment has its own replay memory."""
    return f"{base}:{env_id}"


def agent_lease_key(run_id: str, index: int) -> str:
    """Held by the agent of run `run_id` that runs with `index`, while it runs."""
    return f"{AGENT_KEY_PREFIX}{run_id}:lease:{index}"


def agent_host_key(run_id: str, hostname: str) -> str:
    """The index the agent on `hostname` last held in run `run_id`."""
    return f"{AGENT_KEY_PREFIX}{run_id}:host:{hostname}"


def status_key(run_id: str, agent_id: str) -> str:
    """Where the agent `agent_id` of run `run_id` publishes its status."""
    return f"{STATUS_KEY_PREFIX}{run_id}:{agent_id}"


def status_pattern(run_id: str) -> str:
    """A SCAN pattern matching the status keys of every agent of run `run_id`."""
    return f"{STATUS_KEY_PREFIX}{run_id}:*"
