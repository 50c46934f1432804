"""The windowed steps/s of an agent's status."""

from __future__ import annotations

import pytest

from borg_game.step_rate import WindowedRate


def test_rate_follows_the_last_window_not_the_average_since_start() -> None:
    rate = WindowedRate(30.0)
    for second in range(0, 62, 2):  # 1,000 steps/s for a minute
        rate.mark(float(second), second * 1_000)
    for second in range(62, 122, 2):  # then 200 steps/s for a minute
        rate.mark(float(second), 60_000 + (second - 60) * 200)
    assert rate.per_second() == pytest.approx(200.0)


def test_rate_before_a_full_window_spans_the_time_since_the_first_mark() -> None:
    rate = WindowedRate(30.0)
    rate.mark(100.0, 5_000)
    rate.mark(104.0, 5_400)
    assert rate.per_second() == pytest.approx(100.0)


def test_rate_is_zero_until_two_marks_apart_in_time() -> None:
    rate = WindowedRate(30.0)
    assert rate.per_second() == 0.0
    rate.mark(7.0, 10)
    assert rate.per_second() == 0.0
    rate.mark(7.0, 12)
    assert rate.per_second() == 0.0
    rate.mark(8.0, 20)
    assert rate.per_second() == pytest.approx(10.0)


def test_window_must_be_positive() -> None:
    with pytest.raises(ValueError, match="window_seconds must be positive, got 0"):
        WindowedRate(0.0)
