from __future__ import annotations

import signal
import threading

import pytest

from pipeline.signals import stop_requests, unless_stopped


def _in_a_worker(fn):  # noqa: ANN001, ANN202
    out: list = []
    t = threading.Thread(target=lambda: out.append(fn()))
    t.start()
    t.join()
    return out[0]


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_stop_landing_in_a_worker_is_noted_there_at_once(signum: int) -> None:
    """The worker that took the signal starts nothing more at once, without waiting for the
    main thread (blocked in join) to run its handler."""
    calls: list[int] = []
    handler = signal.getsignal(signum)
    with stop_requests() as stop:
        def worker() -> tuple:
            signal.pthread_kill(threading.get_ident(), signum)
            return unless_stopped(stop, calls.append, 1), stop.noted()

        skipped, noted = _in_a_worker(worker)
        assert skipped is None and noted and calls == []
        assert stop.signum == signum
    assert signal.getsignal(signum) is handler


def test_other_signals_do_not_stop_and_the_wakeup_fd_is_given_back() -> None:
    got: list[int] = []
    wakeup_fd = signal.set_wakeup_fd(-1)  # whatever was set before this test, given back
    signal.set_wakeup_fd(wakeup_fd)
    previous = signal.signal(signal.SIGUSR1, lambda s, f: got.append(s))  # noqa: ARG005
    try:
        with stop_requests() as stop:
            for _ in range(5000):  # more than one read takes, more than a socket would hold
                signal.pthread_kill(threading.get_ident(), signal.SIGUSR1)
            assert len(got) == 5000
            assert not stop.noted() and unless_stopped(stop, len, "ab") == 2

            def worker() -> tuple:  # the stop behind 5,000 others; the main thread, blocked
                # in join, runs no handler meanwhile
                for _ in range(5000):
                    signal.pthread_kill(threading.get_ident(), signal.SIGUSR1)
                signal.pthread_kill(threading.get_ident(), signal.SIGTERM)
                return stop.noted(), stop.signum

            assert _in_a_worker(worker) == (True, signal.SIGTERM)
        assert stop.noted()  # a stop stays noted after the block
        assert signal.set_wakeup_fd(wakeup_fd) == wakeup_fd  # the fd from before the block
    finally:
        signal.signal(signal.SIGUSR1, previous)
