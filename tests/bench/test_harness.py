"""The benchmark harness's pieces, without timing assertions."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.floors import codec_floor, io_floor, remove_outputs, scan_floor
from bench.harness import (
    Child,
    Settings,
    lake_path,
    median_round,
    pick_ids,
    snapshot,
    source_state,
)
from bench.report import compare, load_rows, ratios, render, scenarios
from pipeline.lake import Lake
from tests.pipeline.conftest import lake_digest


def test_snapshot_is_isolated_from_its_source(date_src: Path, tmp_path: Path) -> None:
    from pipeline.intake import parse_ids
    from pipeline.scrub import run_scrub

    before_state, before_bytes = source_state(date_src), lake_digest(date_src)
    snap = snapshot(date_src, tmp_path / "snap")
    assert source_state(snap).keys() == before_state.keys()
    run_scrub(Lake.open(snap), parse_ids("1,2,3"), "arrow")
    assert source_state(date_src) == before_state
    assert lake_digest(date_src) == before_bytes
    assert lake_digest(snap) != before_bytes


def test_child_reports_rusage_io_and_work_time(date_src: Path, tmp_path: Path) -> None:
    child = Child({"kind": "floor", "name": "scan", "lake": str(date_src), "workers": 2},
                  tmp_path / "scan.json").start()
    child.go()
    r = child.result()
    assert r["work_s"] > 0 and r["rows"] > 0
    assert r["peak_rss_mb"] > 50  # an interpreter with pyarrow loaded (VmHWM)
    assert child.rusage["maxrss_wait4_mb"] >= r["peak_rss_mb"]
    assert child.rusage["cpu_s"] >= child.rusage["user_s"] > 0
    assert {"rchar", "wchar"} <= set(r["io"])
    assert child.wall_s >= r["work_s"]


def test_child_failure_is_an_error(date_src: Path, tmp_path: Path) -> None:
    (tmp_path / "ids.json").write_text("[1]")
    child = Child({"kind": "strategy", "name": "no-such-strategy", "lake": str(date_src),
                   "workers": 1, "ids_file": str(tmp_path / "ids.json")},
                  tmp_path / "x.json").start()
    with pytest.raises(RuntimeError, match="failed with exit status"):
        child.go()


def test_floors_measure_the_given_files_and_keep_them_until_removed(date_src: Path,
                                                                   tmp_path: Path) -> None:
    snap = snapshot(date_src, tmp_path / "snap")
    lake = Lake.open(snap)
    files = lake.files("recordings")[:5]
    paths = [f.path for f in files]
    before = lake_digest(snap)
    assert io_floor(lake, paths, 2)["bytes_written"] == sum(f.bytes for f in files)
    codec = codec_floor(lake, paths, 2)
    assert codec["files"] == 5 and codec["bytes_written"] > 0
    scan = scan_floor(lake, 2)
    assert scan["rows"] == sum(f.rows for t in lake.tables() for f in lake.files(t))
    # like a strategy's new files, the floors' outputs stay (beside the sources) for the round
    assert len(list(snap.rglob("*.codec-floor.tmp"))) == 5
    assert len(list(snap.rglob("*.io-floor.tmp"))) == 5
    assert remove_outputs(lake, paths) == 10
    assert lake_digest(snap) == before  # sources untouched, nothing left


def test_settings_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PROFILE", "quick")
    quick = Settings.from_env()
    assert quick.days == 7 and lake_path(quick, 0.01, "date").name == "sf0.01-date-seed42-days7"
    monkeypatch.setenv("SF", "0.02")  # a scale asked for: the generator's default lake
    assert lake_path(Settings.from_env(), 0.02, "date").name == "sf0.02-date-seed42"
    monkeypatch.setenv("PROFILE", "full")
    monkeypatch.setenv("SF", "0.5")
    monkeypatch.setenv("BATCHES", "10,20")
    monkeypatch.setenv("LAYOUTS", "bucket")
    s = Settings.from_env()
    assert s.sfs == (0.5,) and s.batches == (10, 20) and s.layouts == ("bucket",)
    assert s.scenarios() == [(0.5, "bucket", 10), (0.5, "bucket", 20)]
    assert s.rounds == 1
    monkeypatch.setenv("ROUNDS", "3")
    assert Settings.from_env().rounds == 3
    monkeypatch.setenv("ROUNDS", "0")
    with pytest.raises(SystemExit, match="ROUNDS must be 1 or more"):
        Settings.from_env()
    monkeypatch.setenv("ROUNDS", "2")
    monkeypatch.setenv("PROFILE", "nope")
    with pytest.raises(SystemExit):
        Settings.from_env()


def test_bench_command_passes_rounds_on_and_refuses_zero(tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """`voicescrub bench --rounds N` reaches the harness as ROUNDS (shown in --help)."""
    import subprocess

    from typer.testing import CliRunner

    from pipeline.cli import app

    runner = CliRunner()
    assert "--rounds" in runner.invoke(app, ["bench", "--help"]).output
    refused = runner.invoke(app, ["bench", "--rounds", "0", "--results", str(tmp_path)])
    assert refused.exit_code == 2 and "ROUNDS must be 1 or more" in refused.output
    for env in ({"ROUNDS": "0"}, {"SF": "one"}):  # as `make bench ROUNDS=0` passes it
        refused = runner.invoke(app, ["bench", "--results", str(tmp_path)], env=env)
        assert refused.exit_code == 2 and "must be" in refused.output, refused.output
    assert not any(tmp_path.iterdir())  # no results folder for a refused run
    seen = {}

    def fake_call(cmd: list[str], cwd: Path, env: dict) -> int:  # the benchmark's pytest
        seen.update(env)
        return 1

    monkeypatch.setattr(subprocess, "call", fake_call)
    runner.invoke(app, ["bench", "--rounds", "3", "--results", str(tmp_path)])
    assert seen["ROUNDS"] == "3"


def test_median_round_is_a_whole_round() -> None:
    rounds = [{"work_s": 30.0, "paired_codec_floor_s": 20.0},
              {"work_s": 10.0, "paired_codec_floor_s": 9.0},
              {"work_s": 20.0, "paired_codec_floor_s": 15.0}]
    assert median_round(rounds) == rounds[2]  # its own paired floor comes with it
    assert median_round(rounds[:2]) == rounds[1]  # even count: the lower one
    assert median_round(rounds[:1]) == rounds[0]


def test_pick_ids_is_deterministic_and_in_range() -> None:
    m = {"config": {"n_customers": 500}}
    a = pick_ids(m, 100, 42)
    assert a == pick_ids(m, 100, 42) and len(set(a)) == 100
    assert min(a) >= 1 and max(a) <= 500
    assert pick_ids(m, 100, 42, job=1) != a


FIXED = Path(__file__).parent / "data" / "benchmark.json"


def test_report_from_a_fixed_json(tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    (run / "benchmark.json").write_text(FIXED.read_text())
    report = render(run).read_text()
    rows = load_rows(run / "benchmark.json")
    groups = scenarios(rows)
    r = ratios(groups[(1.0, "date", 1000)])
    assert r["arrow"]["codec"] == pytest.approx(30.0 / 15.0)
    assert r["duckdb"]["best"] == pytest.approx(36.0 / 30.0)
    assert "| arrow | 30.0 (×2.00) |" in report
    assert "## sf 1, date layout, 1,000 customers" in report
    csv = (run / "timings.csv").read_text().splitlines()
    assert csv[0] == "profile,sf,layout,batch,kind,contender,metric,value"
    assert any(",arrow,work_s,30.0" in line for line in csv)
    for png in ("time_vs_batch.png", "time_vs_sf.png", "write_amplification.png"):
        assert (run / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_compare_flags_a_regression(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    data = json.loads(FIXED.read_text())
    (a / "benchmark.json").write_text(json.dumps(data))
    for bench in data["benchmarks"]:
        if bench["extra_info"]["name"] == "duckdb":
            bench["extra_info"]["work_s"] *= 1.5
    (b / "benchmark.json").write_text(json.dumps(data))
    text, regressed = compare(a, b)
    assert regressed and "**REGRESSION**" in text
    assert not compare(a, a)[1]
    # a run on a 7-day lake (the quick profile's) is not compared with one on a 30-day lake
    for bench in data["benchmarks"]:
        bench["extra_info"].setdefault("settings", {})["days"] = 7
    (b / "benchmark.json").write_text(json.dumps(data))
    text, regressed = compare(a, b)
    assert not regressed and "not compared: lakes of 30 and 7 days" in text


def test_report_shows_both_steps_of_a_table_format(tmp_path: Path) -> None:
    data = json.loads(FIXED.read_text())
    cow = next(b for b in data["benchmarks"] if b["extra_info"].get("name") == "arrow"
               and b["extra_info"]["layout"] == "date")
    fmt = json.loads(json.dumps(cow))
    fmt["extra_info"].update(
        kind="format", name="delta", logical_s=40.0, physical_s=5.0, total_s=45.0,
        latency_s=45.0, bytes_before=6e9, bytes_after_logical=12e9, bytes_after_physical=6e9,
        residue_after_logical={"visible": 0, "physical": 1234, "metadata": 56, "files": []},
        residue_after_physical={"visible": 0, "physical": 0, "metadata": 0, "files": []},
        queries_between=cow["extra_info"]["queries_after"],
        conversion={"convert_s": 100.0, "bytes": 6e9})
    data["benchmarks"].append(fmt)
    run = tmp_path / "run"
    run.mkdir()
    (run / "benchmark.json").write_text(json.dumps(data))
    report = render(run).read_text()
    assert "## Logical vs physical erasure" in report
    assert "| delta | table format | 40.00 | 5.00 | 45.00 |" in report
    assert "0 / 1,234 (56) | 0 / 0 |" in report
    assert "| arrow | copy-on-write | 30.00 | 0 | 30.00 |" in report
    assert "delta 100.0 s, 6,000 MB" in report
    # the format row stays out of the copy-on-write scenario tables and their ratios
    assert "delta" not in ratios(scenarios(load_rows(run / "benchmark.json"))[(1.0, "date",
                                                                              1000)])


def test_headline_scenarios_follow_the_reports_rule(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PROFILE", "default")
    monkeypatch.setenv("SF", "0.1,1")
    monkeypatch.setenv("BATCHES", "10,1000")
    monkeypatch.setenv("LAYOUTS", "date,bucket")
    s = Settings.from_env()
    assert s.headline_scenarios() == [(1.0, "date", 1000), (1.0, "bucket", 1000)]
    monkeypatch.setenv("BATCHES", "10,100")
    assert Settings.from_env().headline_scenarios() == [(1.0, "date", 100),
                                                        (1.0, "bucket", 100)]


def test_report_uses_the_paired_codec_floor(tmp_path: Path) -> None:
    data = json.loads(FIXED.read_text())
    for bench in data["benchmarks"]:
        if bench["extra_info"]["name"] == "arrow":
            bench["extra_info"]["paired_codec_floor_s"] = 24.0
    run = tmp_path / "run"
    run.mkdir()
    (run / "benchmark.json").write_text(json.dumps(data))
    report = render(run).read_text()
    r = ratios(scenarios(load_rows(run / "benchmark.json"))[(1.0, "date", 1000)])
    assert r["arrow"]["paired"] == pytest.approx(30.0 / 24.0)
    assert r["duckdb"]["paired"] is None  # no paired floor: no paired ratio
    assert "| arrow | 30.0 (×2.00; ×1.25 paired) |" in report
    assert "| 1.25 (floor 24.0 s) |" in report
    # a comparison of two runs with paired floors compares those
    slower = json.loads(json.dumps(data))
    for bench in slower["benchmarks"]:
        if bench["extra_info"]["name"] == "arrow":
            bench["extra_info"]["paired_codec_floor_s"] = 12.0  # × 2.50 paired, +100 %
    other = tmp_path / "other"
    other.mkdir()
    (other / "benchmark.json").write_text(json.dumps(slower))
    text, regressed = compare(run, other)
    assert regressed and "| 1.25 | 2.50 | +100% |" in text


def test_report_says_when_figures_are_a_median_round(tmp_path: Path) -> None:
    data = json.loads(FIXED.read_text())
    run = tmp_path / "run"
    run.mkdir()
    (run / "benchmark.json").write_text(json.dumps(data))
    assert "median round" not in render(run).read_text()
    for bench in data["benchmarks"]:
        bench["extra_info"]["settings"]["rounds"] = 3
    (run / "benchmark.json").write_text(json.dumps(data))
    assert "3 rounds each, every figure from the median round" in render(run).read_text()


def test_report_judges_the_issues_targets_on_the_run(tmp_path: Path) -> None:
    data = json.loads(FIXED.read_text())
    bucket = []
    for bench in data["benchmarks"]:
        x = bench["extra_info"]
        if x["name"] == "arrow":
            # three rounds, each with the codec floor run right before it; its median round
            # (20 s) is not its largest peak
            x["rounds"] = [{**x, "work_s": w, "paired_codec_floor_s": f, "peak_rss_mb": m}
                           for w, f, m in ((30.0, 25.0, 900.0), (18.0, 15.0, 1100.0),
                                           (20.0, 12.0, 950.0))]
            x["work_s"], x["paired_codec_floor_s"], x["peak_rss_mb"] = 20.0, 12.0, 950.0
        if x["name"] == "polars":
            x["work_s"] = 26.0  # slower than arrow: arrow is the best strategy to judge
        if x["kind"] == "floor" or x["name"] == "duckdb":
            small = json.loads(json.dumps(bench))
            small["extra_info"].update(layout="bucket", batch=10, rounds=None,
                                       files_rewritten=40, touched_files=40, files_total=2000)
            bucket.append(small)
    data["benchmarks"] += bucket
    data["benchmarks"].reverse()  # the best strategy is not the first listed

    def report() -> str:
        run = tmp_path / "run"
        run.mkdir(exist_ok=True)
        (run / "benchmark.json").write_text(json.dumps(data))
        return " ".join(render(run).read_text().split())

    text = report()
    assert "## Targets" in text
    # the best strategy (arrow, 20 s) ÷ the run's codec floor (15 s): ×1.33
    assert "| arrow 20.0 s ÷ 15.0 s = ×1.33 | **not met** |" in text
    # round by round against each round's own floor: ×1.20, ×1.20, ×1.67 → median ×1.20
    assert "arrow: ×1.20, ×1.20, ×1.67 → ×1.20 | met |" in text
    # the cap holds for every round: the largest peak, not the median round's
    assert "(largest of the rounds) | arrow 1,100 MB | **not met** |" in text
    assert "| 0 rows found in 6 audited job(s) | met |" in text  # arrow 3, duckdb 2, polars 1
    assert ("| duckdb: 40 of 2,000 files rewritten; the dry-run plan found keys in 40 | met |"
            in text)

    # an even number of rounds: the median lies between the two
    arrow = next(b["extra_info"] for b in data["benchmarks"]
                 if b["extra_info"]["name"] == "arrow")
    arrow["rounds"] = arrow["rounds"][1:]
    assert "arrow: ×1.20, ×1.67 → ×1.43 | **not met** |" in report()
    # residue found by an audit, and a job that rewrote a file the plan did not name
    for b in data["benchmarks"]:
        x = b["extra_info"]
        if x["name"] == "duckdb" and x["batch"] == 10:
            x["residue_physical_rows"], x["files_rewritten"] = 12, 41
    text = report()
    assert "| 12 rows found in 5 audited job(s) | **not met** |" in text
    assert "duckdb: 41 of 2,000 files rewritten; the dry-run plan found keys in 40 | **not met**" \
        in text
    # a run without the target jobs says so instead of judging another job
    for b in data["benchmarks"]:
        b["extra_info"]["batch"] = 100
    text = report()
    assert "not measured (`make bench` with the default profile measures it)" in text
    assert "not measured (the default profile's bucket sweep measures it)" in text
