"""The generator benchmark's report, rendered from fixed results."""

from __future__ import annotations

import pytest

from bench.generate_report import generate_ratios, render_generate_report

RESULTS = [
    {"contender": "voicescrub date", "kind": "voicescrub", "sf": 1, "rows": 44_000_000,
     "replica_rows": 43_000_000, "seconds": 16.0, "rows_per_s": 2_750_000.0, "mb_per_s": 370.0,
     "peak_rss_mb": 280.0, "worker_vmhwm_mb": 201.4, "parent_vmhwm_mb": 145.6, "cpu_s": 29.0,
     "wall_s": 16.3},
    {"contender": "DuckDB dbgen", "kind": "dbgen", "sf": 1, "rows": 8_661_245, "seconds": 7.7,
     "rows_per_s": 1_100_000.0, "dbgen_s": 4.9, "copy_s": 2.8, "threads": 2},
    {"contender": "Faker", "kind": "faker", "rows": 20_000, "seconds": 4.4, "rows_per_s": 4545.0,
     "faker_s": 4.3, "write_s": 0.1},
]


def test_ratios_against_dbgen() -> None:
    (r,) = generate_ratios(RESULTS)
    assert r["ratio"] == pytest.approx(2.5)
    assert generate_ratios(RESULTS[:1]) == []


def test_markdown() -> None:
    md = render_generate_report(RESULTS, machine={"cores": 2, "versions": {"duckdb": "1.5.5"}},
                                command="make bench-generate")
    assert "| voicescrub date | 1 | 44,000,000 | 43,000,000 | 16.00 | 2.750 |" in md
    assert "| 280 | 201.4 / 145.6 |" in md  # the per-process peaks, beside ru_maxrss
    assert "| voicescrub date | 1 | 1 | 2.50 |" in md
    assert "CALL dbgen 4.90 s + COPY to Parquet (zstd) 2.80 s, 2 threads." in md
    assert "- versions: duckdb 1.5.5" in md and "make bench-generate" in md


def test_targets_are_judged_on_the_run() -> None:
    md = " ".join(render_generate_report(RESULTS).split())
    assert "## Targets" in md
    assert "| voicescrub date: ≥ 2 M rows/s end to end | 2.75 M rows/s | met |" in md
    assert ("faster in rows/s than DuckDB's dbgen | 2.75 against 1.10 M rows/s (dbgen at sf 1) "
            "| met |") in md
    assert "peak RSS ≤ 2 GiB (largest process) | 280 MB | met |" in md
    assert "not measured (`VOICESCRUB_BENCH_SF3=1 make bench-generate` measures sf 3)" in md
    # sf 3's largest worker peaking 0.6 MB above sf 1's: the measured peak grew
    sf3 = {**RESULTS[0], "contender": "voicescrub date (sf 3)", "sf": 3.0, "layout": "date",
           "worker_vmhwm_mb": 202.0, "rows_per_s": 1_900_000.0}
    results = [{**RESULTS[0], "layout": "date"}, *RESULTS[1:], sf3]
    md = " ".join(render_generate_report(results).split())
    assert ("| date layout: largest worker's peak no larger at sf 3 than at sf 1 | 202.0 MB at "
            "sf 3, 201.4 MB at sf 1 (+0.6 MB) | **not met** |") in md
    slow = [{**RESULTS[0], "rows_per_s": 1_000_000.0}, *RESULTS[1:]]
    md = " ".join(render_generate_report(slow).split())
    assert "| 1.00 M rows/s | **not met** |" in md
    assert "1.00 against 1.10 M rows/s (dbgen at sf 1) | **not met** |" in md
