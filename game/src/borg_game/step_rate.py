"""Steps per second over a recent window, the figure an agent's status reports.

An average since start misleads: a hive fills its memory at thousands of steps/s, then
learns at a few hundred, and the average takes many minutes to come down. The rate over the
last `RATE_WINDOW_SECONDS` follows what the agent does now.
"""

from __future__ import annotations

from collections import deque

RATE_WINDOW_SECONDS = 30.0


class WindowedRate:
    """A counter's rate over about the last `window_seconds`, from marks (time, count).

    Marks come at the agent's status reports, a few seconds apart, so a few dozen are held.
    The oldest mark kept is the newest one at or before the window's start: the rate spans
    the whole window once the marks are older than it, and the time since the first mark
    before that. The agent marks first at its first report, after its first step, so the
    time it took to start is not counted as time spent playing.
    """

    def __init__(self, window_seconds: float) -> None:
        if window_seconds <= 0:
            raise ValueError(f"window_seconds must be positive, got {window_seconds}")
        self._window_seconds = window_seconds
        self._marks: deque[tuple[float, int]] = deque()

    def mark(self, now: float, count: int) -> None:
        """Note the counter's value at time `now` (seconds, from a monotonic clock)."""
        self._marks.append((now, count))
        window_start = now - self._window_seconds
        while len(self._marks) > 2 and self._marks[1][0] <= window_start:
            self._marks.popleft()

    def per_second(self) -> float:
        """The counter's increase per second between the oldest kept mark and the newest; 0 before two."""
        if len(self._marks) < 2:
            return 0.0
        (first_time, first_count), (last_time, last_count) = self._marks[0], self._marks[-1]
        if last_time <= first_time:
            return 0.0
        return (last_count - first_count) / (last_time - first_time)
