"""Copy-on-write with PyArrow, row-group aware: row groups the plan found free of keys are
passed to the writer untouched by the filter."""

from __future__ import annotations

import pyarrow.compute as pc
import pyarrow.parquet as pq

from pipeline.strategies.base import (
    RewriteResult,
    RewriteTask,
    Sink,
    Strategy,
    account_input,
    erase_mask,
)


class ArrowRewrite(Strategy):
    name = "arrow"
    description = "copy-on-write, PyArrow reader, row-group aware filter"
    engine = "pyarrow"

    def rewrite(self, task: RewriteTask) -> RewriteResult:
        result = RewriteResult()
        pf = pq.ParquetFile(task.src)
        with_keys = set(task.row_groups)
        sink = Sink(task, result)
        try:
            for i in range(pf.metadata.num_row_groups):
                rg = pf.read_row_group(i)
                if i in with_keys:
                    mask = erase_mask(rg, task)
                    erased = pc.sum(mask).as_py() or 0
                    kept = rg.filter(pc.invert(mask)) if erased else rg
                else:
                    erased, kept = 0, rg
                account_input(result, rg, erased)
                sink.write(kept)
            sink.close()
        except BaseException:
            sink.abort()
            raise
        return result


STRATEGY = ArrowRewrite
