"""Fault injection for the crash tests: VOICESCRUB_CRASH_AT=<point>:<n> kills the process with
SIGKILL the n-th time it reaches <point>. Unset (always, outside tests), it costs one lookup."""

from __future__ import annotations

import os
import signal
import threading

_counts: dict[str, int] = {}
_lock = threading.Lock()
_TARGET = os.environ.get("VOICESCRUB_CRASH_AT")


def crashpoint(name: str) -> None:
    if _TARGET is None:
        return
    point, _, n = _TARGET.partition(":")
    if point != name:
        return
    with _lock:
        _counts[name] = _counts.get(name, 0) + 1
        hit = _counts[name] == int(n or 1)
    if hit:
        os.kill(os.getpid(), signal.SIGKILL)
