"""What every child process of the local hive gets before exec: it dies with its launcher."""

from __future__ import annotations

import contextlib
import ctypes
import signal

_PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    """Ask the kernel to SIGTERM this process when its parent dies (Linux; a no-op elsewhere).

    Runs in the child before exec (`preexec_fn`): if the launcher is killed outright, no
    agent, monitor or embedded Redis is ever left behind.
    """
    with contextlib.suppress(OSError):  # not Linux: children then rely on an explicit stop
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
