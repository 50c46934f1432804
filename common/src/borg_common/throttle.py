"""Throttled logging: a problem that repeats many times a second is logged at most once per
interval, with how many like it were held back, so a hot path cannot flood the log."""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from typing import Any

from loguru import logger


class ThrottledLog:
    """Logs a repeated message at most once per `interval_seconds` and counts the rest.

    Attributes:
        occurrences: every call so far, logged or not.
        suppressed: calls held back since the last line that was logged.
    """

    def __init__(self, interval_seconds: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._interval = interval_seconds
        self._clock = clock
        self._last = -math.inf
        self._lock = threading.Lock()  # the replay writer's thread and the agent loop share some
        self.occurrences = 0
        self.suppressed = 0

    def warning(self, message: str, *args: Any) -> bool:
        """Log at WARNING when the interval has passed; True when it was logged."""
        return self._log("WARNING", message, args)

    def error(self, message: str, *args: Any) -> bool:
        """Log at ERROR when the interval has passed; True when it was logged."""
        return self._log("ERROR", message, args)

    def _log(self, level: str, message: str, args: tuple[Any, ...]) -> bool:
        # A logged line says how many were held back since the previous one.
        now = self._clock()
        with self._lock:
            self.occurrences += 1
            if now - self._last < self._interval:
                self.suppressed += 1
                return False
            self._last = now
            held_back, self.suppressed = self.suppressed, 0
        suffix = f" ({held_back} more like it since the last such line)" if held_back else ""
        logger.opt(depth=2).log(level, message + suffix, *args)  # the caller's line, not ours
        return True
