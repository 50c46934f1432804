from __future__ import annotations

from borg_common.redaction import redact_url, redact_values


def test_credentials_of_a_url_are_masked() -> None:
    assert redact_url("redis://monitor:s3cret@redis:6379/0") == "redis://***@redis:6379/0"
    assert redact_url("redis://:s3cret@127.0.0.1:6379/0") == "redis://***@127.0.0.1:6379/0"


def test_a_url_without_credentials_is_unchanged() -> None:
    assert redact_url("redis://localhost:6379/0") == "redis://localhost:6379/0"


def test_only_url_values_are_touched() -> None:
    values = {"redis_url": "redis://:pw@host/0", "seed": 3, "note": "a:b@c"}
    assert redact_values(values) == {"redis_url": "redis://***@host/0", "seed": 3, "note": "a:b@c"}
