from __future__ import annotations

import fnmatch

from borg_common.redis_keys import STATUS_KEY_PREFIX, status_key, status_pattern


def test_a_runs_status_pattern_matches_its_agents_keys_only() -> None:
    assert status_key("run", "agent-0").startswith(STATUS_KEY_PREFIX)
    assert fnmatch.fnmatchcase(status_key("run", "agent-0"), status_pattern("run"))
    assert not fnmatch.fnmatchcase(status_key("other-run", "agent-0"), status_pattern("run"))
