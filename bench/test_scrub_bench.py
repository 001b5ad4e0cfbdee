"""The scrub benchmark: every strategy and the three floors, per scenario, measured in one run.

Run it through `make bench` / `voicescrub bench` (which also renders the report), or directly:
    PROFILE=quick .venv/bin/python -m pytest bench/test_scrub_bench.py --benchmark-only

Each round: a hard-linked snapshot of the scenario's lake and a fresh child process, made in
the untimed setup; the timer covers the child's work. After the round: the receipt's
verification, an audit of every file of the snapshot (no residue, visible or hidden), the
source lake untouched, and the read-penalty queries on the scrubbed lake.
"""

from __future__ import annotations

import json
import shutil
from functools import cache
from pathlib import Path

import numpy as np
import pytest

from bench.harness import (
    FLOOR_NAMES,
    Child,
    Settings,
    ensure_lake,
    machine,
    median_round,
    pick_ids,
    snapshot,
    source_state,
)

SETTINGS = Settings.from_env()
STRATEGIES = SETTINGS.strategy_names()
SCENARIOS = SETTINGS.scenarios()
PAIRED = set(SETTINGS.headline_scenarios())  # their strategy rounds get a paired codec floor


def _sid(sc: tuple[float, str, int]) -> str:
    return f"sf{sc[0]:g}-{sc[1]}-b{sc[2]}"


@cache
def scenario_inputs(sf: float, layout: str, batch: int) -> dict:
    """Lake, ids, touched files (a dry-run plan, untimed) and the baseline query times."""
    import datetime as dt

    from pipeline.intake import ErasureRequest
    from pipeline.lake import Lake
    from pipeline.scrub import plan_scrub

    src = ensure_lake(SETTINGS, sf, layout)
    manifest = json.loads((src / "_lake.json").read_text())
    ids = pick_ids(manifest, batch, SETTINGS.seed)
    work = SETTINGS.work_dir / _sid((sf, layout, batch))
    work.mkdir(parents=True, exist_ok=True)
    (work / "ids.json").write_text(json.dumps(ids))
    req = ErasureRequest(np.array(ids, np.int64), dt.datetime.now(dt.UTC), "bench", 0)
    plan = plan_scrub(Lake.open(src), req, SETTINGS.n_workers)
    touched = [fp.file.path for fp in plan.touched]
    (work / "paths.json").write_text(json.dumps(touched))
    base = Child({"kind": "queries", "name": "baseline", "lake": str(src),
                  "probe_customer": _probe(src, ids)}, work / "baseline-queries.json").start()
    base.go()
    return {"src": src, "ids": ids, "work": work, "touched_files": len(touched),
            "touched_bytes": sum(fp.file.bytes for fp in plan.touched),
            "rows_to_erase": sum(fp.rows_matched for fp in plan.touched),
            "baseline_queries": base.result()["queries"], "manifest": manifest,
            "lake_bytes": sum(p.stat().st_size for p in src.rglob("*") if p.is_file())}


def _probe(src: Path, ids: list[int]) -> int:
    """A customer who stays (the voice-history query must return rows after the scrub)."""
    n = json.loads((src / "_lake.json").read_text())["config"]["n_customers"]
    kept = sorted(set(range(1, min(n, 10_000) + 1)) - set(ids))
    return kept[len(kept) // 2] if kept else 1  # a job erasing everyone: the query finds none


class Rounds:
    """Setup of each pedantic round: a fresh snapshot and a child ready to go. With
    `paired_floor`, that floor first runs to completion on a snapshot of its own, untimed by
    pytest-benchmark: the strategy's time is then also compared with a floor measured back to
    back with it, which a shared machine's slow drifts hit alike."""

    def __init__(self, inputs: dict, spec: dict, tag: str, paired_floor: str | None = None
                 ) -> None:
        self.inputs, self.spec, self.tag = inputs, spec, tag
        self.paired_floor = paired_floor
        self.runs: list[tuple[Path, Child]] = []
        self.paired: list[dict] = []

    def _child(self, spec: dict, tag: str) -> tuple[Path, Child]:
        snap = snapshot(self.inputs["src"], self.inputs["work"] / tag)
        spec = {**spec, "lake": str(snap), "workers": SETTINGS.n_workers,
                "ids_file": str(self.inputs["work"] / "ids.json"),
                "paths_file": str(self.inputs["work"] / "paths.json")}
        return snap, Child(spec, self.inputs["work"] / f"{tag}.json").start()

    def setup(self) -> tuple[tuple, dict]:
        i = len(self.runs)
        if self.paired_floor:
            snap, floor = self._child({"kind": "floor", "name": self.paired_floor},
                                      f"{self.tag}-paired-{self.paired_floor}-r{i}")
            floor.go()
            self.paired.append(_figures(floor))
            shutil.rmtree(snap)
        self.runs.append(self._child(self.spec, f"{self.tag}-r{i}"))
        return (self.runs[-1][1],), {}


def _figures(child: Child) -> dict:
    r = child.result()
    return {"wall_s": child.wall_s, "work_s": r["work_s"], **child.rusage,
            "peak_rss_mb": r["peak_rss_mb"],
            "read_bytes": r["io"].get("read_bytes", 0),
            "write_bytes": r["io"].get("write_bytes", 0),
            "rchar": r["io"].get("rchar", 0), "wchar": r["io"].get("wchar", 0)}


def _engine_versions() -> dict:
    from pipeline.receipt import engine_versions

    return engine_versions()


@pytest.mark.parametrize("floor", FLOOR_NAMES)
@pytest.mark.parametrize("scenario", SCENARIOS, ids=[_sid(s) for s in SCENARIOS])
def test_floor(benchmark, scenario: tuple[float, str, int], floor: str) -> None:  # noqa: ANN001
    inputs = scenario_inputs(*scenario)
    rounds = Rounds(inputs, {"kind": "floor", "name": floor}, f"floor-{floor}")
    benchmark.group = _sid(scenario)
    benchmark.pedantic(Child.go, setup=rounds.setup, rounds=SETTINGS.rounds, iterations=1)
    figures = [_figures(c) for _, c in rounds.runs]
    for snap, _ in rounds.runs:
        shutil.rmtree(snap)
    benchmark.extra_info.update(_common(scenario, inputs, "floor", floor) | {
        "rounds": figures, **median_round(figures),
        "floor_result": rounds.runs[-1][1].result().get("files"),
    })


@pytest.mark.parametrize("strategy", STRATEGIES)
@pytest.mark.parametrize("scenario", SCENARIOS, ids=[_sid(s) for s in SCENARIOS])
def test_strategy(benchmark, scenario: tuple[float, str, int], strategy: str) -> None:  # noqa: ANN001
    from pipeline.audit import run_audit
    from pipeline.lake import Lake

    inputs = scenario_inputs(*scenario)
    before = source_state(inputs["src"])
    rounds = Rounds(inputs, {"kind": "strategy", "name": strategy}, strategy,
                    paired_floor="codec" if scenario in PAIRED else None)
    benchmark.group = _sid(scenario)
    benchmark.pedantic(Child.go, setup=rounds.setup, rounds=SETTINGS.rounds, iterations=1)
    figures = []
    for i, (snap, child) in enumerate(rounds.runs):
        receipt = child.result()["receipt"]
        assert receipt["verification"]["passed"], receipt["verification"]["failures"][:3]
        report = run_audit(Lake.open(snap), np.array(inputs["ids"]), SETTINGS.n_workers,
                           names=False)
        assert report.clean, [f"{f.path}:{f.column}:{f.rows}" for f in report.residue[:5]]
        q = Child({"kind": "queries", "name": "after", "lake": str(snap),
                   "probe_customer": _probe(inputs["src"], inputs["ids"])},
                  child.result_path.with_suffix(".queries.json")).start()
        q.go()
        t = receipt["totals"]
        erased_bytes = max(t["bytes_read"] - t["bytes_written"], 1)
        figures.append(_figures(child) | {
            "files_total": t["files"], "files_rewritten": t["files_rewritten"],
            "rows_erased": t["rows_erased"], "bytes_scanned": t["bytes_scanned"],
            "bytes_rewritten_read": t["bytes_read"], "bytes_written": t["bytes_written"],
            "write_amplification": t["bytes_written"] / erased_bytes,
            "row_groups_rewritten": _row_groups(child),
            "phase_s": receipt["timings_s"],
            "residue_logical_rows": report.visible_rows,
            "residue_physical_rows": report.visible_rows + report.hidden_rows,
            "queries_after": q.result()["queries"],
            "bytes_on_disk_after": sum(p.stat().st_size for p in snap.rglob("*")
                                       if p.is_file()),
            **({"paired_codec_floor_s": rounds.paired[i]["work_s"],
                "paired_codec_floor_cpu_s": rounds.paired[i]["cpu_s"]}
               if rounds.paired else {}),
        })
        shutil.rmtree(snap)
    assert source_state(inputs["src"]) == before, "a strategy wrote into the source lake"
    benchmark.extra_info.update(_common(scenario, inputs, "strategy", strategy) | {
        "rounds": figures, **median_round(figures),
    })


def _row_groups(child: Child) -> int:
    receipt = json.loads(Path(child.result()["receipt_path"]).read_text())
    return sum(r["row_groups_with_keys"] for t in receipt["tables"].values()
               for r in t.values())


@pytest.mark.skipif(SETTINGS.backlog_jobs < 1, reason="this profile has no backlog scenario")
@pytest.mark.parametrize("strategy", STRATEGIES)
def test_backlog(benchmark, strategy: str) -> None:  # noqa: ANN001
    """Erasure requests arrive daily: `backlog_jobs` jobs in a row on the same lake."""
    from pipeline.audit import run_audit
    from pipeline.lake import Lake

    sf, layout, batch = max(SETTINGS.sfs), SETTINGS.layouts[0], min(SETTINGS.batches)
    inputs = scenario_inputs(sf, layout, batch)
    work = inputs["work"]
    snap = snapshot(inputs["src"], work / f"backlog-{strategy}")
    jobs, all_ids = [], []
    for j in range(SETTINGS.backlog_jobs):
        ids = pick_ids(inputs["manifest"], batch, SETTINGS.seed, job=1000 + j)
        all_ids += ids
        (work / f"backlog-{j}.json").write_text(json.dumps(ids))
        child = Child({"kind": "strategy", "name": strategy, "lake": str(snap),
                       "workers": SETTINGS.n_workers, "ids_file": str(work / f"backlog-{j}.json")},
                      work / f"backlog-{strategy}-{j}.json").start()
        if j == 0:
            first = child
            benchmark.pedantic(Child.go, args=(first,), rounds=1, iterations=1)
        else:
            child.go()
        assert child.result()["receipt"]["verification"]["passed"]
        jobs.append(_figures(child))
    report = run_audit(Lake.open(snap), np.array(sorted(set(all_ids))), SETTINGS.n_workers,
                       names=False)
    assert report.clean
    shutil.rmtree(snap)
    benchmark.group = f"backlog-sf{sf:g}-{layout}-b{batch}"
    benchmark.extra_info.update(_common((sf, layout, batch), inputs, "backlog", strategy) | {
        "jobs": jobs, "work_s": sum(j["work_s"] for j in jobs),
        "peak_rss_mb": max(j["peak_rss_mb"] for j in jobs),
    })


def _common(scenario: tuple[float, str, int], inputs: dict, kind: str, name: str) -> dict:
    sf, layout, batch = scenario
    return {"kind": kind, "name": name, "sf": sf, "layout": layout, "batch": batch,
            "profile": SETTINGS.profile, "workers": SETTINGS.n_workers,
            "touched_files": inputs["touched_files"], "touched_bytes": inputs["touched_bytes"],
            "rows_to_erase": inputs["rows_to_erase"], "lake_bytes": inputs["lake_bytes"],
            "baseline_queries": inputs["baseline_queries"],
            "engine_versions": _engine_versions(), "machine": machine(),
            "settings": SETTINGS.to_json()}
