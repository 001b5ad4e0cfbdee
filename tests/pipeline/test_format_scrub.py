"""The logical step over attempts: a DELETE that an earlier, stopped attempt committed is
counted and checked against that attempt's journaled counts. A fake format (tables in
memory) gives exact control over where an attempt stops and what a DELETE does; the real
formats are killed and re-run in test_formats."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pyarrow as pa
import pyarrow.compute as pc
import pytest

from pipeline.format_scrub import logical_step
from pipeline.formats import StepResult
from pipeline.journal import Journal
from pipeline.lineage import EraseRule
from pipeline.plan import key_array, match

# recordings has two rules: by customer, then by device (customer 5's rows on device 99)
RULES = {"recordings": [EraseRule("recordings", "customer_id", "customer_id"),
                        EraseRule("recordings", "device_id", "device_id")],
         "customers": [EraseRule("customers", "customer_id", "customer_id")]}
KEYS = {"customer_id": key_array(pa.array([3], pa.int64())),
        "device_id": key_array(pa.array([99], pa.int64()))}


class Stopped(Exception):
    """The attempt ends here, its DELETE committed (as a kill right after it would)."""


class FakeFormat:
    metadata_dirs: tuple[str, ...] = ()

    def __init__(self) -> None:
        self.tables = {
            "recordings": pa.table({"customer_id": pa.array([1, 3, 3, 5, 5, 5, 7, 8], pa.int64()),
                                    "device_id": pa.array([10, 30, 31, 99, 99, 99, 70, 80],
                                                          pa.int64())}),
            "customers": pa.table({"customer_id": pa.array([1, 3, 5, 7, 8], pa.int64())})}
        self.stop_after: int | None = None  # the n-th DELETE of the attempt commits, then stops
        self.extra_row = False  # a DELETE also takes customer 8's rows (a kept customer)
        self.miscount = 0  # a DELETE reports this many rows more than it took
        self.deletes = 0

    def table_dir(self, flake: object, table: str) -> None:
        return None

    def live_files(self, flake: object, table: str) -> list[str]:
        return []

    def row_count(self, flake: object, table: str) -> int:
        return self.tables[table].num_rows

    def scan(self, flake: object, table: str, columns: list[str] | None = None
             ) -> list[pa.RecordBatch]:
        return self.tables[table].select(columns or self.tables[table].column_names
                                         ).to_batches()

    def delete(self, flake: object, table: str, column: str, keys: pa.Array) -> StepResult:
        t = self.tables[table].combine_chunks()
        hit = match(t[column].combine_chunks(), keys)
        if self.extra_row:
            hit = pc.or_(hit, pc.equal(t["customer_id"], 8))
        self.tables[table] = t.filter(pc.invert(hit))
        self.deletes += 1
        if self.deletes == self.stop_after:
            raise Stopped
        return StepResult(rows_deleted=int(pc.sum(hit).as_py() or 0) + self.miscount)


FLAKE = SimpleNamespace(tables=lambda: list(RULES),
                        lineage=SimpleNamespace(rules_for=lambda t: RULES[t]))


def attempt(fmt: FakeFormat, journal: Journal) -> tuple[dict, dict]:
    fmt.deletes = 0
    tables, checks, _, _ = logical_step(FLAKE, fmt, KEYS, True, journal)
    return tables, checks


def counts(tables: dict) -> dict:
    """Per table and per DELETE: rows before, deleted, after."""
    def of(e: dict) -> tuple[int, int, int]:
        return e["rows_before"], e["rows_deleted"], e["rows_after"]
    return {t: (of(e), [of(c)[:2] for c in e.get("by_column", [])]) for t, e in tables.items()}


def new_journal(tmp_path: Path, name: str) -> Journal:
    journal = Journal(tmp_path, name)
    journal.dir.mkdir(parents=True)
    return journal


@pytest.fixture
def reference(tmp_path: Path) -> dict:
    tables, checks = attempt(FakeFormat(), new_journal(tmp_path, "reference"))
    assert checks["passed"], checks
    assert counts(tables) == {"recordings": ((8, 5, 3), [(8, 2), (6, 3)]),
                              "customers": ((5, 1, 4), [])}
    return counts(tables)


@pytest.mark.parametrize("stops", [[1], [2], [3], [1, 2], [2, 3], [1, 2, 3]],
                         ids=lambda s: "then".join(map(str, s)))
def test_stopped_attempts_then_a_re_run_count_the_whole_job(stops: list[int], tmp_path: Path,
                                                            reference: dict) -> None:
    """Stopped after its n-th DELETE committed (one attempt per entry of `stops`, each
    counting its DELETEs from 1), then run to the end: the counts of one uninterrupted run.
    The table with two DELETEs (the second taking rows the first left) is counted per
    DELETE too; a re-run that counted from the table as it found it failed its check."""
    fmt, journal = FakeFormat(), new_journal(tmp_path, "job")
    for n in stops:
        fmt.stop_after = n
        with pytest.raises(Stopped):
            attempt(fmt, journal)
    fmt.stop_after = None
    tables, checks = attempt(fmt, journal)
    assert checks["passed"], checks
    assert counts(tables) == reference
    # an attempt stopped right after the n-th DELETE had taken its rows: the rows it left
    # are checked by the re-run, its checks of the DELETE itself never ran
    deletes = [*tables["recordings"]["by_column"], tables["customers"]]
    assert [n for n, e in enumerate(deletes, 1) if e.get("stopped_before_its_checks")] == stops
    # the re-run's own counts, for a DELETE an earlier attempt ran
    assert ("this_attempt" in tables["customers"]) == (3 in stops)
    if 3 in stops:
        assert tables["customers"]["this_attempt"]["rows_deleted"] == 0


def test_a_row_lost_by_the_first_attempt_fails_every_re_run(tmp_path: Path) -> None:
    """Its DELETE took a kept customer's row: the re-runs, whose DELETEs take nothing,
    check the rows it left against the counts it found, and fail too."""
    fmt, journal = FakeFormat(), new_journal(tmp_path, "job")
    fmt.extra_row = True
    _, checks = attempt(fmt, journal)
    assert not checks["passed"]
    fmt.extra_row = False
    for _ in range(2):
        _, checks = attempt(fmt, journal)
        assert "recordings: 5 rows after, expected 8 - 2" in checks["failures"], checks
        assert "customers: 3 rows after, expected 5 - 1" in checks["failures"], checks


def test_a_delete_count_that_disagreed_fails_every_re_run(tmp_path: Path) -> None:
    """What a re-run cannot check again (its DELETE takes nothing) stays failed."""
    fmt, journal = FakeFormat(), new_journal(tmp_path, "job")
    fmt.miscount = 1
    _, checks = attempt(fmt, journal)
    assert "customers: DELETE reports 2 rows, 1 matched" in checks["failures"]
    fmt.miscount = 0
    _, checks = attempt(fmt, journal)
    assert checks["failures"] == [
        "recordings: DELETE reports 3 rows, 2 matched (an earlier attempt)",
        "recordings: DELETE reports 4 rows, 3 matched (an earlier attempt)",
        "customers: DELETE reports 2 rows, 1 matched (an earlier attempt)"], checks
