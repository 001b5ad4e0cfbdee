"""Resolve: from the requested customer ids to every key that reaches their rows.

Follows the lineage spec: each derived key is read from its mapping table (the rows whose `via`
column holds an already resolved key), through the same planner the scrub uses, so bucket
routing and statistics prune the mapping tables too.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from pipeline.lake import Lake
from pipeline.plan import Planner, key_array


def resolve_keys(lake: Lake, customer_ids: np.ndarray, workers: int = 2,
                 cache: dict | None = None, trust_metadata: bool = True
                 ) -> dict[str, pa.Array]:
    """Key kind -> sorted unique values to erase, computed from the lake as it stands.

    With `cache`, the file plans of each mapping table are kept under (table, rules) so the
    scrub's own plan does not scan those key columns a second time. `trust_metadata` as in
    `Planner`."""
    lineage = lake.lineage
    keys: dict[str, pa.Array] = {lineage.subject: key_array(pa.array(customer_ids, pa.int64()))}
    pending = list(lineage.derived)
    while pending:
        # every derived key whose `via` key is resolved: their mapping tables in one pass
        ready = [d for d in pending if d.via in keys]
        pending = [d for d in pending if d.via not in keys]
        if not ready:  # the lineage parser refuses cycles; never loop on one
            raise ValueError(f"lineage keys {[d.name for d in pending]} cannot be resolved")
        planner = Planner(lake, keys, workers, trust_metadata=trust_metadata)
        jobs = []
        for d in ready:
            jobs.append((d.table, [(d.via_column, d.via)],
                         tuple(dict.fromkeys((d.column, d.via_column)))))
        found_keys = {}
        for d, job, plans in zip(ready, jobs, planner.plan_tables(jobs), strict=True):
            if cache is not None:
                cache[(d.table, tuple(job[1]))] = plans
            found = [p.matched_values[d.column] for p in plans if p.matched_values is not None]
            if found:
                found_keys[d.name] = key_array(pa.chunked_array(found).combine_chunks())
            else:
                found_keys[d.name] = key_array(pa.array([], _column_type(lake, d.table,
                                                                          d.column)))
        keys.update(found_keys)
    return keys


def _column_type(lake: Lake, table: str, column: str) -> pa.DataType:
    import pyarrow.parquet as pq

    files = lake.files(table)
    if not files:
        return pa.int64()
    return pq.read_schema(lake.root / files[0].path).field(column).type


def present_subjects(lake: Lake, customer_ids: np.ndarray, workers: int = 2) -> np.ndarray:
    """Which requested ids any table holds directly (the rest are reported as unknown)."""
    subject = lake.lineage.subject
    keys = {subject: key_array(pa.array(customer_ids, pa.int64()))}
    planner = Planner(lake, keys, workers)
    seen: list[pa.Array] = []
    for rule in lake.lineage.rules:
        if rule.key != subject:
            continue
        for p in planner.plan_table(rule.table, [(rule.column, subject)], values=(rule.column,)):
            if p.matched_values is not None:
                seen.append(p.matched_values[rule.column].combine_chunks())
        if seen and len(np.unique(np.concatenate([s.to_numpy() for s in seen]))) == len(
                customer_ids):
            break
    if not seen:
        return np.array([], dtype=np.int64)
    return np.unique(np.concatenate([s.to_numpy() for s in seen]))
