"""Retry delays: double after every failure, up to a cap, back to the start on success."""

from __future__ import annotations


class ExponentialBackoff:
    """The delay before the next retry: `initial`, doubled per failure in a row, at most `maximum`."""

    def __init__(self, initial: float, maximum: float) -> None:
        if initial <= 0 or maximum < initial:
            raise ValueError(f"backoff needs 0 < initial <= maximum, got initial={initial}, maximum={maximum}")
        self.initial = initial
        self.maximum = maximum
        self.failures = 0

    def delay(self) -> float:
        """The wait before retrying after the failures counted so far (`initial` before any)."""
        return float(min(self.maximum, self.initial * 2 ** max(0, self.failures - 1)))

    def failed(self) -> float:
        """Count one more failure; returns the wait before the next try."""
        self.failures += 1
        return self.delay()

    def succeeded(self) -> None:
        """Start over at `initial`."""
        self.failures = 0
