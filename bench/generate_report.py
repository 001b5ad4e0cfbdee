"""Report of the generator benchmark: pure functions from result dicts to markdown.

A result dict (one per contender, as bench/test_generate_bench.py records it) has at least
``contender``, ``kind`` ("voicescrub" | "dbgen" | "faker"), ``rows``, ``seconds`` and
``rows_per_s``; optional keys are rendered as "–" when missing.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from bench.report import verdict

DASH = "–"


def _num(value: object, fmt: str) -> str:
    if value is None:
        return DASH
    try:
        return format(value, fmt)
    except (TypeError, ValueError):
        return str(value)


def _sf(value: object) -> str:
    return DASH if value is None else f"{value:g}" if isinstance(value, float | int) else str(value)


def generate_ratios(results: Sequence[Mapping]) -> list[dict]:
    """voicescrub rows/s ÷ dbgen rows/s for every voicescrub result (against the first dbgen)."""
    dbgen = next((r for r in results if r.get("kind") == "dbgen" and r.get("rows_per_s")), None)
    if dbgen is None:
        return []
    out = []
    for r in results:
        if r.get("kind") != "voicescrub" or not r.get("rows_per_s"):
            continue
        out.append({
            "contender": r["contender"],
            "sf": r.get("sf"),
            "dbgen_sf": dbgen.get("sf"),
            "ratio": r["rows_per_s"] / dbgen["rows_per_s"],
        })
    return out


# The generator issue's "done when" figures.
TARGET_ROWS_PER_S = 2_000_000
TARGET_RSS_MB = 2048.0


def generate_targets(results: Sequence[Mapping]) -> list[str]:
    """The issue's targets judged on this run alone, as markdown table rows: rows/s at sf 1,
    faster than dbgen in the same run, peak RSS, and the largest worker's peak no larger at
    sf 3 than at sf 1 (the measured peaks, compared as they are)."""
    ours = [r for r in results if r.get("kind") == "voicescrub" and r.get("rows_per_s")]
    at_sf1 = [r for r in ours if r.get("sf") == 1]
    lines = ["| target | measured in this run | verdict |", "|---|---|---|"]
    if not at_sf1:
        return lines + ["| the whole lake at sf 1 | not measured | – |"]
    dbgen = next((r for r in results if r.get("kind") == "dbgen" and r.get("rows_per_s")), None)
    for r in at_sf1:
        rps = r["rows_per_s"]
        lines.append(f"| {r['contender']}: ≥ 2 M rows/s end to end | {rps / 1e6:.2f} M rows/s | "
                     f"{verdict(rps >= TARGET_ROWS_PER_S)} |")
        if dbgen is not None:
            lines.append(f"| {r['contender']}: faster in rows/s than DuckDB's dbgen | "
                         f"{rps / 1e6:.2f} against {dbgen['rows_per_s'] / 1e6:.2f} M rows/s "
                         f"(dbgen at sf {_sf(dbgen.get('sf'))}) | "
                         f"{verdict(rps > dbgen['rows_per_s'])} |")
        rss = r.get("peak_rss_mb")
        if rss is not None:
            lines.append(f"| {r['contender']}: peak RSS ≤ 2 GiB (largest process) | "
                         f"{rss:,.0f} MB | {verdict(rss <= TARGET_RSS_MB)} |")
    for r1 in at_sf1:
        r3 = next((r for r in ours if r.get("sf") == 3 and r.get("layout") == r1.get("layout")
                   and r.get("worker_vmhwm_mb") is not None), None)
        if r3 is None or r1.get("worker_vmhwm_mb") is None:
            continue
        a, b = r1["worker_vmhwm_mb"], r3["worker_vmhwm_mb"]
        lines.append(f"| {r1.get('layout')} layout: largest worker's peak no larger at sf 3 "
                     f"than at sf 1 | {b:,.1f} MB at sf 3, {a:,.1f} MB at sf 1 "
                     f"({b - a:+.1f} MB) | {verdict(b <= a)} |")
    if not any(r.get("sf") == 3 for r in ours):
        lines.append("| largest worker's peak no larger at sf 3 than at sf 1 | not measured "
                     "(`VOICESCRUB_BENCH_SF3=1 make bench-generate` measures sf 3) | – |")
    return lines


def render_generate_report(results: Sequence[Mapping], *, machine: Mapping | None = None,
                           command: str | None = None, title: str = "Generator benchmark"
                           ) -> str:
    """Markdown: one row per contender, the voicescrub ÷ dbgen ratios, machine and command."""
    lines = [f"# {title}", ""]
    if machine and machine.get("created_utc"):
        lines += [f"Measured {machine['created_utc']} in one run (same machine, same minute: "
                  "compare ratios, not absolute figures).", ""]
    header = ("| contender | sf | rows | replica rows | seconds | M rows/s | MB/s "
              "| peak RSS MB | worker / parent VmHWM MB | tree RSS MB | CPU s | process s |")
    lines += [header, "|---|" + "---:|" * (header.count("|") - 2)]
    for r in results:
        rps = r.get("rows_per_s")
        lines.append("| " + " | ".join([
            str(r.get("contender", DASH)),
            _sf(r.get("sf")),
            _num(r.get("rows"), ",d"),
            _num(r.get("replica_rows"), ",d") if r.get("replica_rows") else DASH,
            _num(r.get("seconds"), ".2f"),
            _num(rps / 1e6 if rps is not None else None, ".3f"),
            _num(r.get("mb_per_s"), ".1f"),
            _num(r.get("peak_rss_mb"), ",.0f"),
            (f"{_num(r.get('worker_vmhwm_mb'), ',.1f')} / {_num(r.get('parent_vmhwm_mb'), ',.1f')}"
             if r.get("worker_vmhwm_mb") is not None else DASH),
            _num(r.get("tree_rss_mb"), ",.0f"),
            _num(r.get("cpu_s"), ".1f"),
            _num(r.get("wall_s"), ".2f"),
        ]) + " |")
    lines += [
        "",
        "- rows: primary rows written (voicescrub: all nine tables, replica copies counted "
        "separately in *replica rows*; dbgen: the 8 TPC-H tables; Faker: customer rows).",
        "- seconds: the work as timed inside the fresh child process (interpreter start and "
        "imports excluded); M rows/s = rows ÷ seconds; MB/s = bytes on disk ÷ seconds "
        "(voicescrub: all files, replicas included). *process s*: wall time of the whole child "
        "process, measured by the parent.",
        "- peak RSS MB: ru_maxrss of the child from os.wait4 (the largest single process among "
        "the child and the worker processes it reaped; an upper bound: ru_maxrss keeps a "
        "parent's RSS at fork across exec). worker / parent VmHWM MB: each process's own "
        "high-water RSS as the generator recorded it in `_lake.json` (the largest worker's, "
        "the parent's); this is what must not grow with sf. tree RSS MB: peak of the sum of "
        "RSS over "
        "the child's process tree, sampled by the parent every 0.1 s (pages shared between "
        "processes count in each).",
        "- CPU s: user + system CPU of the child and its reaped descendants (os.wait4).",
    ]
    details = [r for r in results if r.get("kind") in ("dbgen", "faker")]
    for r in details:
        if r.get("kind") == "dbgen":
            lines.append(f"- {r['contender']}: CALL dbgen {_num(r.get('dbgen_s'), '.2f')} s + "
                         f"COPY to Parquet (zstd) {_num(r.get('copy_s'), '.2f')} s, "
                         f"{r.get('threads', DASH)} threads.")
        else:
            lines.append(f"- {r['contender']}: Faker calls {_num(r.get('faker_s'), '.2f')} s + "
                         f"pyarrow Parquet write {_num(r.get('write_s'), '.2f')} s "
                         f"({r.get('fields_per_row', 5)} Faker calls per row).")
    ratios = generate_ratios(results)
    if ratios:
        lines += ["", "## voicescrub rows/s ÷ dbgen rows/s", "",
                  "| voicescrub | sf | dbgen sf | ratio |", "|---|---:|---:|---:|"]
        lines += [f"| {x['contender']} | {_sf(x['sf'])} | {_sf(x['dbgen_sf'])} "
                  f"| {x['ratio']:.2f} |" for x in ratios]
    lines += ["", "## Targets", "", "The generator issue's targets, judged on this run alone.",
              "", *generate_targets(results)]
    if machine:
        lines += ["", "## Machine", ""]
        for key in ("cpu", "cores", "memory_gib", "python", "platform"):
            if machine.get(key) is not None:
                lines.append(f"- {key}: {machine[key]}")
        versions = machine.get("versions") or {}
        if versions:
            lines.append("- versions: " + ", ".join(f"{k} {v}" for k, v in versions.items()))
    if command:
        lines += ["", "## Command", "", "```", command, "```"]
    return "\n".join(lines) + "\n"
