"""Clean shutdown of a service process: SIGTERM (docker stop) and SIGINT (Ctrl-C) ask the
main loop to stop; once it has, further signals are ignored so the final flush completes."""

from __future__ import annotations

import signal
import threading
from types import FrameType


def stop_on_signals() -> threading.Event:
    """An event that SIGTERM and SIGINT set; the main loop polls it and stops by itself."""
    stop = threading.Event()

    def request_stop(signum: int, _frame: FrameType | None) -> None:
        # No logging here: the handler may interrupt a log call and loguru's lock is not reentrant.
        # The loop sees `stop` within a step and logs why it stopped.
        stop.set()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    return stop


def ignore_stop_signals() -> None:
    """From now on SIGTERM and SIGINT do nothing: a second Ctrl-C or the launcher's SIGTERM must
    not turn a clean exit into a kill while the last buffers are flushed."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
