"""What every strategy shares: the task it is given, the result it returns, the writer.

A copy-on-write strategy reads one source file, drops the rows whose key columns hold a key to
erase, and streams the kept rows into a new file with the source's schema and writer settings.
The engines differ in how they read and filter; the writer (and so the bytes on disk) is shared,
so a scrubbed lake is encoded like the generated one whichever engine ran.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar, TypeVar

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from generators.writer import open_writer
from pipeline.damage import engine_failure
from pipeline.dictionary import table_without_unused_entries
from pipeline.faults import crashpoint
from pipeline.lake import fsync_path
from pipeline.plan import Rule, match_np
from pipeline.rowhash import row_checksum


@dataclass(frozen=True)
class RewriteTask:
    src: Path
    dst: Path  # temp path beside the source; the commit step renames it
    rules: tuple[Rule, ...]
    keys: dict[str, pa.Array]
    row_groups: tuple[int, ...]  # row groups that hold keys (from the plan)
    settings: dict  # writer settings (manifest or source metadata)
    schema: pa.Schema  # the source's Arrow schema, kept as is
    # The source, open: as the plan opened it when it kept it (see FilePlan.source), so the
    # rewrite reads the very file whose row positions the plan matched. The driver closes it.
    source: pq.ParquetFile = field(repr=False, compare=False)
    # Row group -> positions of the rows to erase, as the plan matched them (None: unknown,
    # e.g. on resume; a strategy then matches the keys itself). Whatever a strategy drops,
    # the Sink checks independently that no row it writes holds a key.
    erase_rows: dict[int, np.ndarray] | None = field(default=None, repr=False, compare=False)
    # Row group -> columns the plan already read from it (see Strategy.reads_planned_columns).
    key_tables: dict[int, pa.Table] | None = field(default=None, repr=False, compare=False)


@dataclass
class RewriteResult:
    rows_in: int = 0
    rows_kept: int = 0
    rows_erased: int = 0
    checksum_kept: int = 0  # order-insensitive: sum of row hashes mod 2^64
    keys_left: int = 0  # keys seen in the rows handed to the writer: must be 0
    # rows dropped that hold no key (a strategy erasing positions it was given checks them):
    # must be 0
    erased_without_key: int = 0
    erased_checked: int = 0  # erased rows whose key was checked that way
    bytes_written: int = 0
    row_groups_written: int = 0
    # The new file as the commit step checked its footer (device, inode, size, mtime), and
    # as renamed in (the same plus ctime); verification re-reads only the footers it cannot
    # tie to a file checked this way.
    checked_as: tuple[int, ...] | None = None
    committed_as: tuple[int, ...] | None = None
    extra: dict = field(default_factory=dict)


def add64(a: int, b: int) -> int:
    return (a + b) & 0xFFFFFFFFFFFFFFFF


class Sink:
    """The shared writer: casts to the source schema, checksums and checks what it writes,
    and makes the file durable (fsync) on close."""

    def __init__(self, task: RewriteTask, result: RewriteResult) -> None:
        self.task, self.result = task, result
        self.writer = open_writer(task.dst, task.schema, task.settings)
        self.rg_rows = task.settings.get("row_group_rows") or 65536
        self.pending: list[pa.RecordBatch] = []
        self.pending_rows = 0

    def write(self, data: pa.Table | pa.RecordBatch, row_group: bool = False) -> None:
        """Hand kept rows to the writer. With `row_group`, `data` is what is left of one
        source row group: it becomes a row group of its own (the source's row-group
        boundaries are kept); otherwise batches are regrouped into row groups of the source's
        row-group size, whatever batch size the engine streams."""
        if data.num_rows == 0:
            return
        if data.schema != self.task.schema:
            data = data.select(self.task.schema.names).cast(self.task.schema)
        # a filter keeps a dictionary whole: the erased rows' values must not reach the file
        data = table_without_unused_entries(data)
        r = self.result
        r.rows_kept += data.num_rows
        r.checksum_kept = add64(r.checksum_kept, row_checksum(data))
        for col, kind in self.task.rules:
            r.keys_left += int(np.count_nonzero(match_np(data[col], self.task.keys[kind])))
        if row_group and not self.pending and data.num_rows <= self.rg_rows:
            table = data if isinstance(data, pa.Table) else pa.Table.from_batches([data])
            self._write_group(table)
            return
        batches = data.to_batches() if isinstance(data, pa.Table) else [data]
        for b in batches:
            self.pending.append(b)
            self.pending_rows += b.num_rows
        # Row groups of the source's size, whatever batch size the engine streams.
        while self.pending_rows >= self.rg_rows:
            self._flush(self.rg_rows)

    def _write_group(self, table: pa.Table) -> None:
        self.writer.write_table(table, row_group_size=max(table.num_rows, 1))
        self.result.row_groups_written += 1
        crashpoint("mid_write")  # a row group is on disk, the file is not finished

    def _flush(self, rows: int) -> None:
        table = pa.Table.from_batches(self.pending, schema=self.task.schema)
        head, tail = table.slice(0, rows), table.slice(rows)
        self._write_group(head)
        self.pending = tail.to_batches()
        self.pending_rows = tail.num_rows

    def close(self) -> None:
        if self.pending_rows:
            self._flush(self.pending_rows)
        self.writer.close()
        fsync_path(self.task.dst)
        self.result.bytes_written = self.task.dst.stat().st_size

    def abort(self) -> None:
        try:
            self.writer.close()
        finally:
            self.task.dst.unlink(missing_ok=True)


T = TypeVar("T")


def engine_batches(engine: str, open_reader: Callable[[], Iterable[T]],
                   refusal: Callable[[BaseException], bool]) -> Iterator[T]:
    """The batches an engine reads from a source. An error of a kind the engine's reader
    raises on data it cannot decode (`refusal`) is the engine refusing the file
    (EngineRefused, see pipeline.damage), unless the machine is to blame; any other error
    (a query the engine rejects) is raised as it is, and so is what the consumer of the
    batches raises (the writer)."""
    batches = None
    while True:
        try:
            if batches is None:
                batches = iter(open_reader())
            batch = next(batches)
        except StopIteration:
            return
        except BaseException as e:  # noqa: BLE001 (a Polars panic is a BaseException)
            if refusal(e):
                raise engine_failure(engine, e) from e
            raise
        yield batch


def erase_mask_np(data: pa.Table | pa.RecordBatch, task: RewriteTask) -> np.ndarray:
    """True for rows to erase (any rule's column holds one of its keys), as numpy."""
    mask = np.zeros(data.num_rows, dtype=bool)
    for col, kind in task.rules:
        mask |= match_np(data[col], task.keys[kind])
    return mask


def count_keyless(data: pa.Table | pa.RecordBatch, task: RewriteTask) -> int:
    """How many rows of `data` hold no key in any rule's column (rows about to be erased
    must hold one: a plan that matched the wrong position would otherwise go unseen)."""
    return int(np.count_nonzero(~erase_mask_np(data, task)))


def erase_mask(data: pa.Table | pa.RecordBatch, task: RewriteTask) -> pa.Array:
    """True for rows to erase (any rule's column holds one of its keys)."""
    return pa.array(erase_mask_np(data, task), pa.bool_())


def account_input(result: RewriteResult, data: pa.Table | pa.RecordBatch,
                  erased_rows: int) -> None:
    result.rows_in += data.num_rows
    result.rows_erased += erased_rows


class Strategy(ABC):
    """One way to erase keys from one file. Subclasses live one per module in this package
    and are found by their `name`."""

    name: ClassVar[str]
    description: ClassVar[str]
    engine: ClassVar[str]  # the Python package whose version the receipt records
    # True: the strategy uses the key columns the plan read (task.key_tables), so the planner
    # keeps them for it until the rewrite; False: they are dropped once matched.
    reads_planned_columns: ClassVar[bool] = False

    @abstractmethod
    def rewrite(self, task: RewriteTask) -> RewriteResult:
        """Write the kept rows of task.src to task.dst (durably) and account for them."""
