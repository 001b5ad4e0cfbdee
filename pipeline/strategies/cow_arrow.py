"""Copy-on-write with PyArrow, row-group aware: row groups the plan found free of keys are
passed to the writer untouched by the filter, and each source row group becomes one row group
of the new file (minus its erased rows). The key columns the plan read are not decoded again:
only the other columns of those row groups are read.

The rows to erase are the positions the plan matched when it read the key columns (so the keys
are not matched over whole columns a second time); without them (a resumed job) the keys are
matched here. The rows at the plan's positions are checked to hold a key (a few rows: the check
that "rows erased = rows the plan found" cannot make here, since it holds by construction), and
the shared Sink checks that no written row holds one.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.strategies.base import (
    RewriteResult,
    RewriteTask,
    Sink,
    Strategy,
    account_input,
    count_keyless,
    erase_mask_np,
)


class ArrowRewrite(Strategy):
    name = "arrow"
    description = "copy-on-write, PyArrow reader, row-group aware filter"
    engine = "pyarrow"
    reads_planned_columns = True

    def rewrite(self, task: RewriteTask) -> RewriteResult:
        result = RewriteResult()
        pf = task.source
        with_keys = set(task.row_groups)
        sink = Sink(task, result)
        try:
            for i in range(pf.metadata.num_row_groups):
                rg = _read_row_group(pf, i, task)
                erased, kept = 0, rg
                if i in with_keys:
                    keep, planned = _keep_mask(rg, task, i)
                    erased = rg.num_rows - int(np.count_nonzero(keep))
                    if planned is not None and len(planned):
                        result.erased_without_key += _keyless_at(rg, task, planned)
                        result.erased_checked += len(planned)
                    if erased:
                        kept = rg.filter(pa.array(keep, pa.bool_()))
                account_input(result, rg, erased)
                sink.write(kept, row_group=True)
            sink.close()
        except BaseException:
            sink.abort()
            raise
        return result


def _read_row_group(pf: pq.ParquetFile, i: int, task: RewriteTask) -> pa.Table:
    """Row group i in the source's schema; columns the plan already read are taken from it."""
    planned = task.key_tables.get(i) if task.key_tables is not None else None
    # One file per worker thread already keeps the cores busy: no threads within a read.
    if planned is None:
        return pf.read_row_group(i, use_threads=False)
    rest = [n for n in task.schema.names if n not in planned.column_names]
    other = pf.read_row_group(i, columns=rest, use_threads=False) if rest else None
    cols = [planned[n] if n in planned.column_names else other[n] for n in task.schema.names]
    return pa.Table.from_arrays(cols, schema=task.schema)  # (pf.schema_arrow converts anew)


def _keep_mask(rg: pa.Table, task: RewriteTask, i: int) -> tuple[np.ndarray, np.ndarray | None]:
    """Rows to keep, and the plan's positions of the rows to erase (None: matched here)."""
    planned = task.erase_rows.get(i) if task.erase_rows is not None else None
    if planned is None:
        return ~erase_mask_np(rg, task), None
    keep = np.ones(rg.num_rows, dtype=bool)
    keep[planned] = False
    return keep, planned


def _keyless_at(rg: pa.Table, task: RewriteTask, positions: np.ndarray) -> int:
    """Rows at `positions` that hold no key: only the rule columns are taken."""
    cols = list(dict.fromkeys(col for col, _ in task.rules))
    return count_keyless(rg.select(cols).take(pa.array(positions)), task)


STRATEGY = ArrowRewrite
