"""Fault injection for the crash tests: VOICESCRUB_CRASH_AT=<point>:<n>[:<signal>] sends the
process SIGKILL (or the named signal, e.g. INT or TERM) the n-th time it reaches <point>. A
named signal goes to the thread at the point, so it lands there before the point returns, as
a Ctrl-C that arrives while that thread runs.
Unset (always, outside tests), it costs one lookup. Read at each point, not at import: the
crash tests fork their jobs from a process that imported this module before the variable
was set."""

from __future__ import annotations

import os
import signal
import threading

_counts: dict[str, int] = {}
_lock = threading.Lock()


def crashpoint(name: str) -> None:
    target = os.environ.get("VOICESCRUB_CRASH_AT")
    if target is None:
        return
    point, _, rest = target.partition(":")
    if point != name:
        return
    n, _, sig = rest.partition(":")
    with _lock:
        _counts[name] = _counts.get(name, 0) + 1
        hit = _counts[name] == int(n or 1)
    if hit and sig:
        signal.pthread_kill(threading.get_ident(), getattr(signal, f"SIG{sig}"))
    elif hit:
        os.kill(os.getpid(), signal.SIGKILL)
