"""Signals in the CLI's long commands: SIGTERM unwinds like Ctrl-C, so cleanup runs."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def terminate_as_interrupt() -> Iterator[None]:
    """SIGTERM raises SystemExit(143) in the main thread, so `finally` blocks run (the default
    action ends the process on the spot)."""
    def stop(signum: int, frame: object) -> None:  # noqa: ARG001 (a signal handler's signature)
        raise SystemExit(128 + signum)

    try:
        previous = signal.signal(signal.SIGTERM, stop)
    except ValueError:  # not the main thread (an embedding program): leave its handler be
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
