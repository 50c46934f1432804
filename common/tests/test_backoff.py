from __future__ import annotations

import pytest

from borg_common.backoff import ExponentialBackoff


def test_delay_doubles_per_failure_up_to_the_maximum() -> None:
    backoff = ExponentialBackoff(initial=0.5, maximum=3.0)
    assert [backoff.failed() for _ in range(5)] == [0.5, 1.0, 2.0, 3.0, 3.0]


def test_success_starts_over_at_the_initial_delay() -> None:
    backoff = ExponentialBackoff(initial=0.1, maximum=5.0)
    backoff.failed()
    backoff.failed()
    backoff.succeeded()
    assert backoff.failures == 0
    assert backoff.failed() == 0.1


def test_an_initial_delay_above_the_maximum_is_refused() -> None:
    with pytest.raises(ValueError, match=r"initial=2.0, maximum=1.0"):
        ExponentialBackoff(initial=2.0, maximum=1.0)
