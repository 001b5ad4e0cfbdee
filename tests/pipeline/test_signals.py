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
    """The main thread's handler has not run yet (it is blocked in join), and the worker that
    took the signal already starts nothing more."""
    calls: list[int] = []
    handler = signal.getsignal(signum)
    with stop_requests() as stop:
        def worker() -> tuple:
            signal.pthread_kill(threading.get_ident(), signum)
            return stop.signum, unless_stopped(stop, calls.append, 1), stop.noted()

        before_noted, skipped, noted = _in_a_worker(worker)
        assert before_noted is None and noted and skipped is None and calls == []
        assert stop.signum == signum
    assert signal.getsignal(signum) is handler


def test_other_signals_do_not_stop_and_the_wakeup_fd_is_given_back() -> None:
    got: list[int] = []
    previous = signal.signal(signal.SIGUSR1, lambda s, f: got.append(s))  # noqa: ARG005
    try:
        with stop_requests() as stop:
            signal.pthread_kill(threading.get_ident(), signal.SIGUSR1)
            assert got == [signal.SIGUSR1]
            assert not stop.noted() and unless_stopped(stop, len, "ab") == 2
        assert not stop.noted()  # the block's socket is gone: no error either
        assert signal.set_wakeup_fd(-1) == -1  # none was set before the block
    finally:
        signal.signal(signal.SIGUSR1, previous)
