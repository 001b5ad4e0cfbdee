"""voicescrub query / shell / views through the CLI."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import duckdb
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from pipeline.cli import app
from queries.views import connect

runner = CliRunner()


def run(*args: object, input: str | None = None):  # noqa: A002  (CliRunner's name)
    return runner.invoke(app, [str(a) for a in args], input=input)


def test_list() -> None:
    r = run("query", "--list")
    assert r.exit_code == 0, r.output
    for name in ("voice_history", "skill_data", "region_volume", "top_intents", "residue"):
        assert name in r.stdout
    assert "customer_id" in r.stdout


def test_table(lake: Path, customer: int) -> None:
    r = run("query", "--lake", lake, "voice_history", "--param", f"customer_id={customer}",
            "--limit", 5)
    assert r.exit_code == 0, r.output
    lines = r.stdout.splitlines()
    assert lines[0].split()[:2] == ["started_at", "region"]
    assert "5 rows (more rows exist" in lines[-1]


def test_table_default_limit(lake: Path) -> None:
    r = run("query", "--lake", lake, "--sql", "SELECT * FROM range(80) t(n)")
    assert r.exit_code == 0, r.output
    assert "50 rows (more rows exist" in r.stdout
    r = run("query", "--lake", lake, "--sql", "SELECT * FROM range(80) t(n)", "--limit", 0)
    assert "80 rows" in r.stdout and "more" not in r.stdout


def test_csv_stdout(lake: Path, manifest: dict) -> None:
    r = run("query", "--lake", lake, "region_volume", "--format", "csv")
    assert r.exit_code == 0, r.output
    rows = list(csv.DictReader(io.StringIO(r.stdout)))
    assert sum(int(x["recordings"]) for x in rows) == manifest["tables"]["recordings"]["rows"]


def test_json_stdout(lake: Path, customer: int) -> None:
    r = run("query", "--lake", lake, "skill_data", "-p", f"customer_id={customer}",
            "-f", "json")
    assert r.exit_code == 0, r.output
    rows = [json.loads(line) for line in r.stdout.splitlines()]
    assert rows and {"skill_user_id", "events", "sample_utterances"} <= set(rows[0])


def test_files(lake: Path, tmp_path: Path, manifest: dict, customer: int) -> None:
    out = tmp_path / "residue.parquet"  # format from the suffix
    r = run("query", "--lake", lake, "residue", "-p", f"customer_ids={customer}", "-o", out)
    assert r.exit_code == 0, r.output
    t = pq.read_table(out)
    assert t.column_names == ["table_name", "via", "region", "origin", "is_replica", "rows"]
    assert t.num_rows > 0 and r.stdout == ""
    out = tmp_path / "intents.txt"
    r = run("query", "--lake", lake, "top_intents", "--format", "csv", "--output", out)
    assert r.exit_code == 0, r.output
    assert out.read_text().startswith("intent,recordings,share_pct,customers\n")
    out = tmp_path / "customers.json"
    r = run("query", "--lake", lake, "--sql", "SELECT * FROM customers", "-o", out,
            "--limit", 7)
    assert r.exit_code == 0, r.output
    assert len(out.read_text().splitlines()) == 7


def test_sql_with_param(lake: Path, customer: int) -> None:
    r = run("query", "--lake", lake, "--sql",
            "SELECT count(*) AS n FROM recordings WHERE customer_id = $c",
            "-p", f"c={customer}", "-f", "csv")
    assert r.exit_code == 0, r.output
    assert int(r.stdout.splitlines()[1]) > 0


@pytest.mark.parametrize("args, message", [
    (["--lake", "{missing}", "voice_history"], "does not exist"),
    (["--lake", "{empty}", "voice_history"], "_lake.json"),
    (["--lake", "{lake}", "no_such_query"], "unknown query"),
    (["--lake", "{lake}", "--sql", "SELEC 1"], "syntax error"),
    (["--lake", "{lake}", "--sql", "SELECT * FROM nowhere"], "nowhere"),
    (["--lake", "{lake}", "voice_history", "-p", "customer_id=abc"], "not a valid BIGINT"),
    (["--lake", "{lake}", "voice_history", "-p", "colour=red"], "no parameter 'colour'"),
    (["--lake", "{lake}", "voice_history", "-p", "customer_id"], "NAME=VALUE"),
    (["--lake", "{lake}", "region_volume", "-f", "parquet"], "needs --output"),
    (["--lake", "{lake}", "region_volume", "-f", "xml"], "--format must be"),
    (["--lake", "{lake}", "region_volume", "-o", "{empty}/x.txt"], "cannot tell the format"),
    (["--lake", "{lake}"], "give a query NAME or --sql"),
    (["--lake", "{lake}", "top_intents", "--sql", "SELECT 1"], "not both"),
    (["--lake", "{lake}", "top_intents", "-p", "region=mars"], "not one of this lake's regions"),
])
def test_errors(lakes: dict[str, Path], tmp_path: Path, args: list[str], message: str) -> None:
    places = {"lake": lakes["date"], "missing": tmp_path / "missing", "empty": tmp_path}
    r = run("query", *(a.format(**places) for a in args))
    assert r.exit_code == 2, r.output
    assert message in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.output


def test_views_db(lake: Path, tmp_path: Path, manifest: dict,
                  monkeypatch: pytest.MonkeyPatch) -> None:
    db = tmp_path / "lake.duckdb"
    r = run("views", "--lake", lake, "--db", db)
    assert r.exit_code == 0, r.output
    assert "15 views" in r.stderr
    monkeypatch.chdir(tmp_path)  # the views hold absolute paths
    by_day = "SELECT date, count(*) FROM recordings GROUP BY ALL ORDER BY ALL"
    with connect(lake) as con:
        expected = con.execute(by_day).fetchall()
    with duckdb.connect(str(db)) as fresh:
        fresh.execute("SET TimeZone = 'Pacific/Auckland'")  # dates must not depend on it
        assert fresh.execute(by_day).fetchall() == expected
        n = fresh.execute("SELECT count(*) FROM recordings").fetchone()[0]
        assert n == manifest["tables"]["recordings"]["rows"]
        all_rows = fresh.execute("SELECT count(*) FROM usage_daily_all").fetchone()[0]
        t = manifest["tables"]["usage_daily"]
        assert all_rows == t["rows"] + t["replica_rows"]
    r = run("views", "--lake", lake, "--db", db)  # rewriting is fine
    assert r.exit_code == 0, r.output


def test_views_sql_and_errors(lake: Path, tmp_path: Path) -> None:
    r = run("views", "--lake", lake)
    assert r.exit_code == 0, r.output
    assert r.stdout.count("CREATE OR REPLACE VIEW") == 15
    assert run("views", "--lake", tmp_path).exit_code == 2
    r = run("views", "--lake", lake, "--db", tmp_path / "no" / "x.duckdb")
    assert r.exit_code == 2 and "does not exist" in r.stderr
    assert not (tmp_path / "no").exists()
    # an existing file that is not a DuckDB database (DuckDB "opened" a CSV, wrote nothing)
    csv = tmp_path / "mine.csv"
    csv.write_text("a,b\n1,2\n")
    r = run("views", "--lake", lake, "--db", csv)
    assert r.exit_code == 2 and "is not a DuckDB database" in r.stderr
    assert csv.read_text() == "a,b\n1,2\n"


def test_shell(lake: Path, manifest: dict) -> None:
    script = ".tables\nSELECT count(*) AS n\n  FROM customers;\n.schema recordings\n" \
             "SELECT 1 AS a; SELECT 'x;y' AS b;\n.quit\nSELECT 'not run';\n"
    r = run("shell", "--lake", lake, input=script)
    assert r.exit_code == 0, r.output
    out = r.stdout
    assert "recordings_all" in out and "started_at" in out
    assert str(manifest["tables"]["customers"]["rows"]) in out
    assert "x;y" in out and "not run" not in out


def test_shell_eof_and_errors(lake: Path) -> None:
    r = run("shell", "--lake", lake, input="SELECT 42 AS answer")  # EOF, no ';'
    assert r.exit_code == 0 and "42" in r.stdout
    r = run("shell", "--lake", lake, input="SELECT nope;\nSELECT 7 AS seven;\n.bogus\n")
    assert r.exit_code == 1
    assert "Error:" in r.stderr and "seven" in r.stdout and "unknown" in r.stderr
    r = run("shell", "--lake", lake, input="")
    assert r.exit_code == 0 and r.stdout == ""
