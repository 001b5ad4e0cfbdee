"""Copy-on-write with DuckDB: DuckDB reads and filters (an anti-join against the keys),
streaming Arrow batches to the shared writer."""

from __future__ import annotations

import threading

import duckdb
import pyarrow as pa

from pipeline.strategies.base import (
    RewriteResult,
    RewriteTask,
    Sink,
    Strategy,
    engine_batches,
)

BATCH_ROWS = 65_536
_local = threading.local()


def _connection() -> duckdb.DuckDBPyConnection:
    # One connection per worker thread; each file is one single-threaded query, the
    # parallelism comes from files in flight (as for the other engines).
    con = getattr(_local, "con", None)
    if con is None:
        con = duckdb.connect(config={"threads": 1, "preserve_insertion_order": True,
                                     "autoinstall_known_extensions": False,
                                     "autoload_known_extensions": False})
        _local.con = con
    return con


class DuckDBRewrite(Strategy):
    name = "duckdb"
    description = "copy-on-write, DuckDB read + anti-join filter"
    engine = "duckdb"

    def rewrite(self, task: RewriteTask) -> RewriteResult:
        result = RewriteResult()
        con = _connection()
        conds = []
        for i, (col, kind) in enumerate(task.rules):
            con.register(f"erase_keys_{i}", pa.table({"k": task.keys[kind]}))
            conds.append(f'"{col}" IN (SELECT k FROM erase_keys_{i})')
        where = " OR ".join(conds)
        rows_in = task.source.metadata.num_rows
        cols = ", ".join(f'"{c}"' for c in task.schema.names)
        # hive_partitioning off: DuckDB otherwise takes a column named like a `key=value`
        # directory of the absolute path (a lake under `.../date=2020-01-01/`) from the path,
        # and would write that value into every row of usage_daily's own `date` column
        sql = (f"SELECT {cols} FROM read_parquet($path, hive_partitioning = false) "
               f"WHERE NOT coalesce(({where}), false)")
        sink = Sink(task, result)
        try:
            def reader() -> pa.RecordBatchReader:
                return con.execute(sql, {"path": str(task.src)}).to_arrow_reader(BATCH_ROWS)

            for batch in engine_batches("DuckDB", reader, _refusal):
                sink.write(batch)
            sink.close()
        except BaseException:
            sink.abort()
            raise
        finally:
            for i in range(len(task.rules)):
                con.unregister(f"erase_keys_{i}")
        # DuckDB streams only the kept rows: the erased count is what the footer lost.
        result.rows_in = rows_in
        result.rows_erased = rows_in - result.rows_kept
        return result


def _refusal(e: BaseException) -> bool:
    """What DuckDB's Parquet reader raises on bytes it cannot decode (a damaged page header
    raises the base class itself, "TProtocolException: Invalid data"); a binder or catalog
    error is the query's."""
    return type(e) is duckdb.Error or isinstance(
        e, duckdb.InvalidInputException | duckdb.IOException | duckdb.ConversionException
        | duckdb.SerializationException | pa.ArrowInvalid)


STRATEGY = DuckDBRewrite
