"""bench.rowhash times both checksum methods on the same tables of a lake and reports them."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from bench.harness import REPO


def test_reports_every_table_and_a_total(date_src: Path) -> None:
    out = subprocess.run([sys.executable, "-m", "bench.rowhash", "--lake", str(date_src),
                          "--files", "2"], cwd=REPO, capture_output=True, text=True, check=True)
    rows = [json.loads(line) for line in out.stdout.splitlines()]
    assert rows[-1]["table"] == "all"
    assert {r["table"] for r in rows[:-1]} >= {"recordings", "audio", "transcripts", "actions"}
    assert sum(r["rows"] for r in rows[:-1]) == rows[-1]["rows"] > 0
    assert all(r["rowhash_ns_per_row"] > 0 and r["polars_ns_per_row"] > 0 for r in rows)
