from __future__ import annotations

import re
from datetime import UTC, datetime

from borg_common.timestamps import utc_timestamp


def test_timestamps_are_iso_8601_utc_with_milliseconds() -> None:
    stamp = utc_timestamp()
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", stamp)
    parsed = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    assert abs((datetime.now(UTC) - parsed).total_seconds()) < 3600
