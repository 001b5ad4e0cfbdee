"""Signals in the CLI's long commands: SIGTERM unwinds like Ctrl-C, so cleanup runs."""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import NoReturn, TypeVar

T = TypeVar("T")


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


class StopRequest:
    """Set by Ctrl-C or SIGTERM (see `stop_requests`): the signal's number, else None."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self._seen: int | None = None  # a pipe the interpreter writes each caught signal to
        self._lock = threading.Lock()

    def noted(self) -> bool:
        """Whether a stop arrived, from any thread, at once. The Python-level handler that sets
        `signum` runs in the main thread only when that thread next runs Python code, which
        can take up to its 0.2 s wait; the interpreter's C-level handler writes the signal's
        number to the wakeup pipe as the signal lands, in whichever thread takes it."""
        if self.signum is None:
            # read and noted in one step (another worker then sees signum set), and never
            # from a pipe the block's end has closed
            with self._lock:
                caught = b""
                try:
                    while self._seen is not None and (chunk := os.read(self._seen, 4096)):
                        caught += chunk
                except BlockingIOError:  # read to its end
                    pass
                stops = [b for b in caught if b in (signal.SIGINT, signal.SIGTERM)]
                if stops and self.signum is None:
                    self.signum = stops[0]
        return self.signum is not None


@contextmanager
def stop_requests() -> Iterator[StopRequest]:
    """Ctrl-C and SIGTERM only set `signum` on the request while the block runs: a loop that
    checks it stops where it chooses. Raising from the handler instead can land inside a lock
    a library holds (a future's, mid-`wait`) and leave it held, so the workers block on it
    and the shutdown that follows waits for them forever."""
    request = StopRequest()

    def note(signum: int, frame: object) -> None:  # noqa: ARG001 (a signal handler's signature)
        request.signum = signum

    # a pipe, not a socket: it holds 64 KiB of one-byte writes, a socket's buffer a few
    # hundred (each write is a packet), and a signal written to a full one is lost
    seen, wakeup = os.pipe()
    try:
        os.set_blocking(seen, False)
        os.set_blocking(wakeup, False)
        try:
            previous = {s: signal.signal(s, note) for s in (signal.SIGINT, signal.SIGTERM)}
        except ValueError:  # not the main thread: signals are not this code's to take
            yield request
            return
        try:
            before = signal.set_wakeup_fd(wakeup, warn_on_full_buffer=False)
            try:
                request._seen = seen
                yield request
            finally:
                signal.set_wakeup_fd(before)
        finally:
            for s, handler in previous.items():
                signal.signal(s, handler)
    finally:
        with request._lock:
            request._seen = None
        os.close(seen)
        os.close(wakeup)


def unless_stopped(stop: StopRequest, fn: Callable[..., T], *args: object) -> T | None:
    """`fn(*args)`, or None without calling it once a stop arrived: a pool's worker starts no
    new file after Ctrl-C. Asked through `noted`, which sees the signal as it lands: the loop
    that reads `signum` wakes only every 0.2 s, and workers took several more files meanwhile."""
    return None if stop.noted() else fn(*args)


def raise_stop(signum: int) -> NoReturn:
    """Unwind as the signal would have: Ctrl-C as KeyboardInterrupt, SIGTERM as SystemExit."""
    if signum == signal.SIGINT:
        raise KeyboardInterrupt
    raise SystemExit(128 + signum)


def exit_code_of(stop: KeyboardInterrupt | SystemExit) -> int:
    """The exit status a stop asks for: SIGTERM's SystemExit carries it, Ctrl-C is 130."""
    return stop.code if isinstance(stop, SystemExit) and isinstance(stop.code, int) else 130
