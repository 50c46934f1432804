from __future__ import annotations

import jsonschema
import pytest

from borg_monitor.messages import bytes_per_transition, console_line, insert_rate, memory_message
from borg_monitor.polling import reading_backoff
from borg_monitor.redis_probe import RedisReading
from tests.conftest import schema_errors


def reading(at: float, pushed: int, count: int = 100, replay_bytes: int | None = 120_000) -> RedisReading:
    return RedisReading(
        monotonic=at,
        timestamp="2026-11-22T10:00:00.123Z",
        transition_count=count,
        replay_bytes=replay_bytes,
        push_counter=pushed,
        used_memory=2_000_000,
        used_memory_rss=4_000_000,
        ops_per_second=250.0,
        connected_clients=3,
        live_agents=2,
    )


def test_insert_rate_is_the_counter_delta_per_second() -> None:
    assert insert_rate(reading(12.0, 3_000), reading(10.0, 1_000)) == pytest.approx(1_000.0)


def test_insert_rate_is_unknown_without_a_previous_reading_or_after_a_counter_reset() -> None:
    assert insert_rate(reading(10.0, 1_000), None) is None
    assert insert_rate(reading(12.0, 10), reading(10.0, 1_000)) is None


def test_bytes_per_transition_divides_the_lists_memory_by_its_length() -> None:
    assert bytes_per_transition(reading(0.0, 0, count=100, replay_bytes=120_000)) == pytest.approx(1_200.0)
    assert bytes_per_transition(reading(0.0, 0, count=0, replay_bytes=None)) is None


def test_messages_follow_the_schema(memory_schema: jsonschema.Draft202012Validator) -> None:
    first = memory_message(reading(10.0, 1_000), None, run_id="run", capacity=1_000)
    second = memory_message(reading(12.0, 3_000), reading(10.0, 1_000), run_id="run", capacity=1_000)
    empty = memory_message(reading(12.0, 0, count=0, replay_bytes=None), None, run_id="run", capacity=1_000)
    for message in (first, second, empty):
        assert schema_errors(memory_schema, message) == []
        assert console_line(message).startswith("replay ")
    assert schema_errors(memory_schema, {**first, "unexpected": 1}) != []
    assert schema_errors(memory_schema, {key: value for key, value in first.items() if key != "insert_rate"}) != []


def test_retry_delay_doubles_from_the_poll_interval_up_to_a_cap() -> None:
    backoff = reading_backoff(1.0)
    assert [backoff.failed() for _ in range(4)] == [1.0, 2.0, 4.0, 8.0]
    for _ in range(50):
        backoff.failed()
    assert backoff.delay() == 30.0
    slow = reading_backoff(60.0)
    assert [slow.failed() for _ in range(3)] == [60.0, 60.0, 60.0]  # never faster than the poll interval
