"""Secrets never reach a log, a checkpoint or a message: URLs lose their credentials."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

# Everything between '//' and '@': the user and the password of redis://user:password@host.
_CREDENTIALS = re.compile(r"//[^@/]*@")


def redact_url(url: str) -> str:
    """`url` with its credentials replaced by ***, e.g. redis://***@host:6379/0 (safe for logs)."""
    return _CREDENTIALS.sub("//***@", url)


def redact_values(values: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of `values` in which every URL-like string has its credentials redacted."""
    return {
        name: redact_url(value) if isinstance(value, str) and "://" in value else value
        for name, value in values.items()
    }
