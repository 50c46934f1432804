from __future__ import annotations

from collections.abc import Iterator

import pytest
from loguru import logger

from borg_common.throttle import ThrottledLog


@pytest.fixture
def lines() -> Iterator[list[str]]:
    captured: list[str] = []
    sink = logger.add(lambda message: captured.append(str(message).strip()), format="{level} {message}")
    yield captured
    logger.remove(sink)


def test_a_repeated_warning_is_logged_once_per_interval_and_the_rest_counted(lines: list[str]) -> None:
    throttle = ThrottledLog(interval_seconds=3600.0)
    logged = [throttle.warning("entry {} skipped", index) for index in range(1000)]
    assert logged == [True] + [False] * 999
    assert lines == ["WARNING entry 0 skipped"]
    assert throttle.occurrences == 1000
    assert throttle.suppressed == 999


def test_the_next_line_says_how_many_were_held_back(lines: list[str]) -> None:
    now = [100.0]
    throttle = ThrottledLog(interval_seconds=60.0, clock=lambda: now[0])
    throttle.error("first")
    now[0] += 30.0  # within the interval: held back
    throttle.error("held")
    throttle.error("held")
    now[0] += 31.0  # the interval has passed
    throttle.error("again")
    assert lines == ["ERROR first", "ERROR again (2 more like it since the last such line)"]
    assert throttle.suppressed == 0
