"""Copy-on-write with Polars: a lazy scan, an is_in anti-filter, streamed in batches to the
shared writer."""

from __future__ import annotations

import polars as pl

from pipeline.strategies.base import (
    RewriteResult,
    RewriteTask,
    Sink,
    Strategy,
    engine_batches,
)

BATCH_ROWS = 65_536


class PolarsRewrite(Strategy):
    name = "polars"
    description = "copy-on-write, Polars streaming scan + is_in filter"
    engine = "polars"

    def rewrite(self, task: RewriteTask) -> RewriteResult:
        result = RewriteResult()
        erase = pl.lit(False)
        for col, kind in task.rules:
            keys = pl.from_arrow(task.keys[kind])
            erase = erase | pl.col(col).is_in(keys.implode()).fill_null(False)
        rows_in = task.source.metadata.num_rows
        lf = pl.scan_parquet(task.src).filter(~erase)
        sink = Sink(task, result)
        try:
            def reader():  # noqa: ANN202
                return lf.collect_batches(chunk_size=BATCH_ROWS, maintain_order=True,
                                          engine="streaming")

            for df in engine_batches("Polars", reader, _refusal):
                sink.write(df.to_arrow())
            sink.close()
        except BaseException:
            sink.abort()
            raise
        result.rows_in = rows_in
        result.rows_erased = rows_in - result.rows_kept
        return result


def _refusal(e: BaseException) -> bool:
    """What Polars' Parquet reader raises on bytes it cannot decode (a panic among them); a
    schema or operation error is the query's."""
    return isinstance(e, pl.exceptions.ComputeError | pl.exceptions.PanicException)


STRATEGY = PolarsRewrite
