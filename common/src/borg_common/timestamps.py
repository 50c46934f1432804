"""Time stamps of every message the hive writes."""

from __future__ import annotations

from datetime import UTC, datetime


def utc_timestamp() -> str:
    """Now as ISO 8601 UTC with milliseconds, e.g. 2026-11-22T10:00:00.123Z."""
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
