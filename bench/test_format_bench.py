"""The table formats in the scrub benchmark: Delta, Iceberg, DuckLake beside copy-on-write.

Per scenario and format, on a fresh copy of the converted lake (conversion timed once and
reported apart, never counted in a scrub):
1. the logical step in a fresh child process (the format's DELETE), timed;
2. an audit of every file: nothing visible, the old bytes still there (asserted);
3. the read-penalty queries between the two steps (delete files make reads slower);
4. the physical step (`purge`) in a fresh child process, timed;
5. an audit: no residue anywhere (asserted); the queries again.
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from bench.format_lakes import ensure_format_lake, restore
from bench.harness import Child
from bench.test_scrub_bench import SETTINGS, _common, _figures, _probe, _sid, scenario_inputs

FORMATS = SETTINGS.format_names()
FORMAT_SCENARIOS = SETTINGS.format_scenario_list()


def _du(root) -> int:  # noqa: ANN001
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file())


def _queries(lake, inputs: dict, path) -> dict:  # noqa: ANN001
    q = Child({"kind": "queries", "name": "q", "lake": str(lake),
               "probe_customer": _probe(inputs["src"], inputs["ids"])}, path).start()
    q.go()
    return q.result()["queries"]


def _audit(lake, ids: list[int]) -> dict:  # noqa: ANN001
    from pipeline.audit import run_audit
    from pipeline.lake import Lake

    r = run_audit(Lake.open(lake), np.array(ids), SETTINGS.n_workers, names=False)
    metadata = sum(f.rows for f in r.residue if not f.visible and not f.path.endswith(
        ".parquet"))
    return {"visible": r.visible_rows, "physical": r.hidden_rows, "metadata": metadata,
            "files": sorted({f.path for f in r.residue})[:20]}


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("scenario", FORMAT_SCENARIOS, ids=[_sid(s) for s in FORMAT_SCENARIOS])
def test_format(benchmark, scenario: tuple[float, str, int], fmt: str) -> None:  # noqa: ANN001
    inputs = scenario_inputs(*scenario)
    work = inputs["work"] / f"format-{fmt}"
    conversion = ensure_format_lake(SETTINGS, *scenario[:2], fmt, work)
    lake = restore(SETTINGS, *scenario[:2], fmt, work)
    bytes_before = _du(lake)
    baseline = _queries(lake, inputs, inputs["work"] / f"format-{fmt}-baseline.json")
    spec = {"name": fmt, "lake": str(lake), "workers": SETTINGS.n_workers,
            "ids_file": str(inputs["work"] / "ids.json")}
    logical = Child({**spec, "kind": "format_logical"},
                    inputs["work"] / f"format-{fmt}-logical.json")
    benchmark.group = _sid(scenario)
    benchmark.pedantic(Child.go, setup=lambda: ((logical.start(),), {}), rounds=1,
                       iterations=1)
    receipt = logical.result()["receipt"]
    assert receipt["logical"]["verification"]["passed"]
    bytes_logical = _du(lake)
    after_logical = _audit(lake, inputs["ids"])
    assert after_logical["visible"] == 0, "the logical step left rows visible"
    rows_erased = sum(t["rows_deleted"] for t in receipt["logical"]["tables"].values())
    if rows_erased:
        assert after_logical["physical"] > 0, "the audit must see the logically deleted bytes"
    between = _queries(lake, inputs, inputs["work"] / f"format-{fmt}-between.json")

    purge = Child({**spec, "kind": "format_purge"}, inputs["work"] / f"format-{fmt}-purge.json")
    purge.start()
    purge.go()
    preceipt = purge.result()["receipt"]
    assert preceipt["physical"]["verification"]["passed"]
    bytes_physical = _du(lake)
    after_physical = _audit(lake, inputs["ids"])
    assert after_physical["visible"] == after_physical["physical"] == 0, after_physical["files"]
    after = _queries(lake, inputs, inputs["work"] / f"format-{fmt}-after.json")

    lf, pf = _figures(logical), _figures(purge)
    benchmark.extra_info.update(_common(scenario, inputs, "format", fmt) | {
        **lf,
        "logical_s": lf["work_s"], "physical_s": pf["work_s"],
        "total_s": lf["work_s"] + pf["work_s"],
        "latency_s": lf["work_s"] + pf["work_s"],  # request → physically gone, back to back
        "logical_phase_s": receipt["timings_s"],
        "physical_verify_s": preceipt["physical"]["verify_seconds"],
        "physical_step_s": preceipt["physical"]["seconds"],
        "peak_rss_mb": max(lf["peak_rss_mb"], pf["peak_rss_mb"]),
        "physical_figures": pf,
        "rows_erased": rows_erased,
        "bytes_before": bytes_before, "bytes_after_logical": bytes_logical,
        "bytes_after_physical": bytes_physical,
        "residue_after_logical": after_logical, "residue_after_physical": after_physical,
        "residue_logical_rows": after_logical["visible"],
        "residue_physical_rows": after_logical["physical"],
        "baseline_queries": baseline, "queries_between": between, "queries_after": after,
        "conversion": conversion,
        "logical_tables": receipt["logical"]["tables"],
        "physical_tables": preceipt["physical"]["tables"],
        "keys_resolved": receipt["keys_resolved"],
    })
    (inputs["work"] / f"format-{fmt}-summary.json").write_text(
        json.dumps(benchmark.extra_info, default=str)[:1_000_000])
    shutil.rmtree(lake)
