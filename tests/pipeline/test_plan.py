"""The planner: key matching (the compiled membership test agrees with NumPy's, for any key
set) and how planning stops on request."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.lake import Lake
from pipeline.plan import IntKeyIndex, Planner, key_array, match_np
from pipeline.signals import terminate_as_interrupt

ints = st.integers(-2**63, 2**63 - 1)


@settings(max_examples=80, deadline=None)
@given(st.lists(ints, max_size=300), st.lists(ints, max_size=300), st.integers(0, 2**20))
def test_int_index_agrees_with_isin(keys: list[int], others: list[int], spread: int) -> None:
    k = np.unique(np.asarray(keys, np.int64))
    # values near the keys too, where the bitmap's hash slots collide most
    values = np.concatenate([np.asarray(others, np.int64), k, k ^ spread]).astype(np.int64)
    np.testing.assert_array_equal(IntKeyIndex(k).contains(values), np.isin(values, k))


def test_large_key_sets_are_exact() -> None:
    rng = np.random.default_rng(7)
    keys = np.unique(rng.integers(0, 2**40, 3_000_000))  # past the bitmap's largest size
    values = np.concatenate([rng.integers(0, 2**40, 200_000), keys[::1000]])
    np.testing.assert_array_equal(IntKeyIndex(keys).contains(values), np.isin(values, keys))


def test_match_never_matches_null_and_reads_dictionaries() -> None:
    keys = key_array([3, 5])
    col = pa.chunked_array([pa.array([3, None, 4]), pa.array([5, 0])])
    assert match_np(col, keys).tolist() == [True, False, False, True, False]
    words = pa.array(["a", None, "b", "a"]).dictionary_encode()
    assert match_np(words, key_array(["a"])).tolist() == [True, False, False, True]


def test_integer_keys_beyond_float_precision_match_beside_nulls() -> None:
    big = 2**53 + 1
    col = pa.array([big, None, 2**53, 2**63 - 1], pa.int64())
    assert match_np(col, key_array([big])).tolist() == [True, False, False, False]
    assert match_np(col, key_array([-2**63])).tolist() == [False, False, False, False]
    assert match_np(col, key_array([2**63 - 1])).tolist() == [False, False, False, True]


def test_statistics_that_cannot_be_decoded_are_not_used() -> None:
    """A damaged string bound in a footer (pyarrow raises decoding it): the row group's key
    column is read instead of the plan failing."""
    from pipeline.plan import _stats_may_hold, _stats_range

    class Damaged:
        has_min_max = True

        @property
        def min(self) -> str:
            raise UnicodeDecodeError("utf-8", b"\xff", 0, 1, "invalid start byte")

        max = min

    keys = ["amzn1.ask.account.1"]
    assert _stats_range(Damaged(), None, keys) is None
    assert _stats_may_hold(Damaged(), None, keys)


@pytest.mark.parametrize("signum, stop", [(signal.SIGINT, KeyboardInterrupt),
                                          (signal.SIGTERM, SystemExit)])
def test_a_stop_request_ends_planning_after_the_files_in_flight(
        date_src: Path, monkeypatch: pytest.MonkeyPatch, signum: int,
        stop: type[BaseException]) -> None:
    """Ctrl-C or SIGTERM during key resolution or a dry run stops after the files in flight:
    no worker starts another, though the loop that reads the stop wakes only every 0.2 s
    (at 0.05 s a file, up to eight more files before)."""
    lake = Lake.open(date_src)  # planning only reads
    calls: list[int] = []
    real, workers = Planner.plan_file, 2

    def slow(self, *a, **k):  # noqa: ANN001, ANN002, ANN003, ANN202
        calls.append(1)
        if len(calls) == 3:  # the main thread waits on the futures by now
            os.kill(os.getpid(), signum)
        time.sleep(0.05)
        return real(self, *a, **k)

    monkeypatch.setattr(Planner, "plan_file", slow)
    keys = {"customer_id": key_array(pa.array([1, 2, 3], pa.int64()))}
    with pytest.raises(stop), terminate_as_interrupt():  # SIGTERM as the CLI takes it
        Planner(lake, keys, workers=workers).plan_table("transcripts")
    assert len(calls) <= 3 + workers < len(lake.files("transcripts"))
