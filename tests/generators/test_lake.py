"""The generated lake honours the data contract: files, schemas, counts, lineage, replicas."""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from generators import writer
from generators.config import ConfigError, LakeConfig
from generators.lake import ARROW_POOL, MANIFEST, _has_jemalloc, _worker_env, generate
from generators.population import bucket_of_ints, bucket_of_strings
from generators.schemas import FACT_TABLES, TABLES
from pipeline.cli import app

SMALL = dict(sf=0.005, days=5, seed=7)  # the conftest lakes
REPO = Path(__file__).resolve().parents[2]


def manifest(lake: Path) -> dict:
    return json.loads((lake / MANIFEST).read_text())


def table(lake: Path, name: str, replicas: bool = False) -> pl.DataFrame:
    df = pl.read_parquet(lake / name / "**" / "*.parquet", hive_partitioning=True)
    if TABLES[name].kind == "fact" and not replicas:
        df = df.filter(pl.col("region") == pl.col("origin"))
    return df


@pytest.fixture(params=["date_lake", "bucket_lake"])
def lake(request: pytest.FixtureRequest) -> Path:
    return request.getfixturevalue(request.param)


def test_all_nine_tables_with_files(lake: Path) -> None:
    m = manifest(lake)
    assert set(m["tables"]) == set(TABLES)
    for name, t in m["tables"].items():
        assert t["rows"] > 0, name
        assert (lake / name).is_dir()


def test_row_counts_match_manifest_and_footers(lake: Path) -> None:
    m = manifest(lake)
    for name, t in m["tables"].items():
        listed = {f["path"]: f["rows"] for f in t["files"]}
        on_disk = {str(p.relative_to(lake)) for p in (lake / name).rglob("*.parquet")}
        assert set(listed) == on_disk, name
        for path, rows in listed.items():
            assert pq.ParquetFile(lake / path).metadata.num_rows == rows
        assert table(lake, name).height == t["rows"]
        by_region = table(lake, name).group_by("region").len()
        assert dict(by_region.iter_rows()) == {r: n for r, n in t["rows_by_region"].items() if n}


def test_file_schemas_are_the_contract(lake: Path) -> None:
    m = manifest(lake)
    for name, t in m["tables"].items():
        expected = TABLES[name].file_schema(m["layout"])
        for f in t["files"][:5]:
            schema = pq.read_schema(lake / f["path"])
            assert schema.remove_metadata().equals(expected), (name, f["path"])


def test_partition_paths(lake: Path) -> None:
    m = manifest(lake)
    leaf = "date=" if m["layout"] == "date" else "bucket="
    for name, t in m["tables"].items():
        for f in t["files"]:
            parts = Path(f["path"]).parts
            assert parts[0] == name and parts[1] == f"region={f['region']}"
            if TABLES[name].kind == "fact":
                assert parts[2] == f"origin={f['origin']}" and parts[3].startswith(leaf)
            else:
                assert len(parts) == 3


def test_referential_integrity(lake: Path) -> None:
    rec = table(lake, "recordings")
    actions = table(lake, "actions")
    assert actions.join(rec, on="recording_id", how="anti").height == 0
    # an action lives in the region where its recording was spoken
    assert actions.join(rec, on=["recording_id", "region"], how="anti").height == 0
    links = table(lake, "skill_links")
    events = table(lake, "skill_events")
    assert events.join(links, on=["skill_user_id", "skill_id"], how="anti").height == 0
    devices = table(lake, "devices")
    assert rec.join(devices, on=["device_id", "customer_id"], how="anti").height == 0
    for name in ("audio", "transcripts"):
        t = table(lake, name)
        assert t.height == rec.height
        assert t.join(rec, on=["recording_id", "customer_id", "region"], how="anti").height == 0
    customers = table(lake, "customers")
    for name in ("devices", "recordings", "skill_links", "usage_daily"):
        assert table(lake, name).join(customers, on="customer_id", how="anti").height == 0


def test_keys_unique(lake: Path) -> None:
    for name, key in (("customers", ["customer_id"]), ("devices", ["device_id"]),
                      ("recordings", ["recording_id"]), ("actions", ["action_id"]),
                      ("skill_events", ["event_id"]), ("skill_links", ["skill_user_id"]),
                      ("usage_daily", ["customer_id", "date"])):
        t = table(lake, name)
        assert t.select(key).is_duplicated().sum() == 0, name


def test_pii_unique_and_shaped(lake: Path) -> None:
    c = table(lake, "customers")
    assert c["email"].n_unique() == c.height
    assert c["phone"].n_unique() == c.height
    assert c["email"].str.contains(r"^[a-z.]+\d+@[a-z.]+$").all()
    assert c["phone"].str.contains(r"^\+\d+ \d{3} \d{3} \d{3}$").all()
    assert c.select(pl.col("full_name").str.len_chars().min()).item() > 2


def test_transcripts_agree_with_intent_and_action(lake: Path) -> None:
    rec = table(lake, "recordings").select("recording_id", pl.col("intent").cast(pl.String))
    tr = table(lake, "transcripts").select("recording_id", "text")
    act = (table(lake, "actions").filter(pl.col("action_type") != "set_volume")
           .select("recording_id", pl.col("action_type").cast(pl.String), "target"))
    df = rec.join(tr, on="recording_id").join(act, on="recording_id")
    music = df.filter(pl.col("intent") == "play_music")
    assert music.height > 0
    assert music["text"].str.starts_with("play ").all()
    assert (music["action_type"] == "play_track").all()
    # the song and artist of the action are the ones spoken
    song = music["target"].str.split(" — ").list.first()
    assert all(s in t for s, t in zip(song, music["text"], strict=True))
    weather = df.filter(pl.col("intent") == "weather")
    assert all(t.endswith(g) for t, g in zip(weather["text"], weather["target"], strict=True))
    calls = df.filter(pl.col("intent") == "call")
    assert all(t == "call " + g for t, g in zip(calls["text"], calls["target"], strict=True))


def test_spoken_pii_belongs_to_the_speaker(lake: Path) -> None:
    tr = table(lake, "transcripts").filter(pl.col("text").str.starts_with("my "))
    assert tr.height > 0
    c = table(lake, "customers")
    j = tr.join(c, on="customer_id")
    ok = [t.endswith((p, e, a)) for t, p, e, a in
          zip(j["text"], j["phone"], j["email"], j["street_address"], strict=True)]
    assert all(ok)


def test_audio_is_wav(lake: Path) -> None:
    a = table(lake, "audio").head(50)
    for payload in a["payload"]:
        assert payload[:4] == b"RIFF" and payload[8:12] == b"WAVE"
        assert int.from_bytes(payload[4:8], "little") == len(payload) - 8
    assert a["payload"].n_unique() == a.height


def test_usage_daily_rolls_up_recordings(lake: Path) -> None:
    rec = table(lake, "recordings")
    usage = table(lake, "usage_daily")
    assert usage["recordings"].sum() == rec.height
    per_customer = rec.group_by("customer_id").len().sort("customer_id")
    rolled = usage.group_by("customer_id").agg(pl.col("recordings").sum()).sort("customer_id")
    assert per_customer["len"].to_list() == rolled["recordings"].to_list()


def test_replicas_are_byte_copies_in_the_paired_region(lake: Path) -> None:
    m = manifest(lake)
    pairs = m["replicas"]
    for name in FACT_TABLES:
        files = m["tables"][name]["files"]
        primary = [f for f in files if f["region"] == f["origin"]]
        replicas = {f["path"]: f for f in files if f["region"] != f["origin"]}
        assert len(replicas) == len(primary)
        for f in primary:
            copy = f["path"].replace(f"region={f['region']}/", f"region={pairs[f['origin']]}/")
            assert copy in replicas
            assert (lake / copy).read_bytes() == (lake / f["path"]).read_bytes()
        assert m["tables"][name]["replica_rows"] == m["tables"][name]["rows"]


def test_bucket_layout_routes_keys(bucket_lake: Path) -> None:
    m = manifest(bucket_lake)
    n = m["buckets"]["count"]
    for name in FACT_TABLES:
        key = TABLES[name].bucket_key
        t = table(bucket_lake, name, replicas=True)
        if key == "skill_user_id":
            b = bucket_of_strings(t[key].to_arrow(), n)
        else:
            b = bucket_of_ints(t[key].to_numpy(), n)
        assert (b == t["bucket"].cast(pl.Int64).to_numpy()).all(), name
    # rows sorted by customer within each file
    for f in m["tables"]["recordings"]["files"]:
        cid = pq.read_table(bucket_lake / f["path"], columns=["customer_id"])["customer_id"]
        assert (np.diff(cid.to_numpy()) >= 0).all()


def test_layouts_hold_the_same_rows(date_lake: Path, bucket_lake: Path) -> None:
    for name in TABLES:
        cols = [f.name for f in TABLES[name].schema]
        a = table(date_lake, name).select(cols)
        b = table(bucket_lake, name).select(cols)
        assert a.sort(cols[:2]).equals(b.sort(cols[:2])), name


def test_same_seed_same_rows_whatever_the_workers(tmp_path: Path, date_lake: Path) -> None:
    out = tmp_path / "again"
    env_before = dict(os.environ)
    m = generate(LakeConfig(layout="date", workers=2, chunk_rows=1000, **SMALL), out)
    # the spawned workers ran on the Arrow pool the memory figures were measured with (or on
    # the one the user named), and the parent's environment is as it was
    expected = os.environ.get(ARROW_POOL) or (
        "jemalloc" if _has_jemalloc() else pa.default_memory_pool().backend_name)
    assert m["generation_arrow_pool"] == [expected]
    assert dict(os.environ) == env_before
    for name in TABLES:
        cols = [f.name for f in TABLES[name].file_schema("date")]
        a = table(date_lake, name).select(cols).sort(cols[:2])
        b = table(out, name).select(cols).sort(cols[:2])
        assert a.equals(b), name


def test_a_pool_the_user_names_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ARROW_POOL, raising=False)
    assert _worker_env().get(ARROW_POOL) == ("jemalloc" if _has_jemalloc() else None)
    monkeypatch.setenv(ARROW_POOL, "system")
    assert ARROW_POOL not in _worker_env()  # left as the user set it


def test_other_seed_other_rows(tmp_path: Path, date_lake: Path) -> None:
    out = tmp_path / "other"
    generate(LakeConfig(layout="date", workers=1, **{**SMALL, "seed": 8}), out)
    a, b = table(date_lake, "recordings"), table(out, "recordings")
    assert not set(a["recording_id"].to_list()) & set(b["recording_id"].to_list())


def test_no_replicas(tmp_path: Path) -> None:
    out = tmp_path / "norep"
    m = generate(LakeConfig(sf=0.002, days=2, workers=1, replicas=False), out)
    assert all(t["replica_rows"] == 0 for t in m["tables"].values())
    assert m["replicas"] == {}


# --- --out and --force: only a previous lake is ever replaced ---------------------------------
def _generate_cli(out: str, *args: str):  # noqa: ANN202
    from typer.testing import CliRunner

    from pipeline.cli import app

    return CliRunner().invoke(app, ["generate", "--out", out, "--sf", "0.0001", "--days", "1",
                                    "--workers", "1", *args])


def _one_line(output: str) -> bool:
    return len([line for line in output.splitlines() if line.strip()]) == 1


def test_force_refuses_a_directory_that_is_not_a_lake(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """--force once deleted any directory: the current one (then crashed on it), or a folder of
    someone's files. It replaces only a previous lake; every other --out is one line, exit 2,
    and nothing is deleted."""
    home = tmp_path / "t"
    (home / "sub").mkdir(parents=True)
    (home / "precious.txt").write_text("important")
    for cwd, out, message in ((tmp_path, str(home), "holds no lake"),
                              (home, ".", "current directory"),
                              (home / "sub", "..", "current directory")):
        monkeypatch.chdir(cwd)
        r = _generate_cli(out, "--force")
        assert r.exit_code == 2 and message in r.output and _one_line(r.output), r.output
    assert (home / "precious.txt").read_text() == "important"
    assert sorted(p.name for p in home.iterdir()) == ["precious.txt", "sub"]


@pytest.mark.skipif(not Path("/proc/self").exists(), reason="needs Linux's /proc")
def test_out_that_cannot_be_created_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    for out in ("/proc/nope", str(tmp_path / "file" / "lake"), str(tmp_path / "file")):
        r = _generate_cli(out)
        assert r.exit_code == 2 and _one_line(r.output), (out, r.output)


def test_out_inside_a_lake_is_refused(tmp_path: Path) -> None:
    """A lake inside a lake: the outer one's audits would find rows no scrub of it reaches."""
    outer = tmp_path / "lake"
    (outer / "customers").mkdir(parents=True)
    (outer / MANIFEST).write_text("{}")
    r = _generate_cli(str(outer / "customers" / "inner"))
    assert r.exit_code == 2 and "is inside the lake" in r.output and _one_line(r.output)
    assert not (outer / "customers" / "inner").exists()


def test_force_replaces_a_previous_lake(tmp_path: Path) -> None:
    out = tmp_path / "lake"
    out.mkdir()
    (out / MANIFEST).write_text("{}")  # a previous lake: what --force may replace
    (out / "customers").mkdir()
    r = _generate_cli(str(out), "--force")
    assert r.exit_code == 0, r.output
    assert manifest(out)["sf"] == 0.0001


def test_force_replaces_what_a_crashed_run_left(tmp_path: Path) -> None:
    from generators.lake import UNFINISHED, check_output, mark_unfinished

    out = tmp_path / "lake"
    out.mkdir()
    mark_unfinished(out)  # as a run that died before its manifest leaves it
    (out / "recordings").mkdir()
    check_output(out, force=True)  # no error: it is (half) a lake
    (out / UNFINISHED).unlink()
    with pytest.raises(ConfigError, match="holds no lake"):
        check_output(out, force=True)


def _generate_failing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                      error: BaseException) -> tuple[Path, object]:
    """`generate` in-process (one worker) whose 41st table write raises `error`."""
    write, calls = writer.TableFile.write, []

    def failing(self, t):  # noqa: ANN001, ANN202
        calls.append(1)
        if len(calls) > 40:
            raise error
        return write(self, t)

    monkeypatch.setattr(writer.TableFile, "write", failing)
    out = tmp_path / "lake"
    return out, CliRunner().invoke(app, ["generate", "--out", str(out), "--sf", "0.002",
                                         "--days", "3", "--workers", "1"])


def test_a_full_disk_removes_the_partial_lake(tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    out, result = _generate_failing(tmp_path, monkeypatch,
                                    OSError(errno.ENOSPC, "No space left on device"))
    assert result.exit_code == 1, result.output
    assert "no space left" in result.output and "the whole lake needs about" in result.output
    assert not out.exists()  # no partial lake, no temp file
    assert not writer._OPEN  # every writer the failed unit held was closed


def test_an_interrupted_run_removes_the_partial_lake(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    out, result = _generate_failing(tmp_path, monkeypatch, KeyboardInterrupt())
    assert result.exit_code == 130, result.output
    assert "interrupted: the partial lake was removed" in result.output
    assert not out.exists() and not writer._OPEN


def _session_members(sid: int) -> list[int]:
    members = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[3]) == sid:  # fields after the name: state, ppid, pgrp, session
            members.append(int(stat.parent.name))
    return members


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGKILL])
def test_workers_do_not_outlive_a_stopped_run(tmp_path: Path, sig: signal.Signals) -> None:
    """Ctrl-C to the process group (workers ignore it: the parent stops them), or the parent
    alone killed outright (workers notice and exit): no worker is left waiting for work."""
    out = tmp_path / "lake"
    proc = subprocess.Popen([sys.executable, "-m", "pipeline.cli", "generate", "--out", str(out),
                             "--sf", "0.02", "--workers", "2"], cwd=REPO, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not any(out.glob("*/*/*/*/*.parquet")) and time.monotonic() < deadline:
        time.sleep(0.1)  # wait until the workers are writing
    if sig == signal.SIGINT:
        os.killpg(proc.pid, sig)  # as a terminal's Ctrl-C
    else:
        os.kill(proc.pid, sig)  # the parent alone
    _, err = proc.communicate(timeout=120)
    if sig == signal.SIGINT:
        assert proc.returncode == 130, err[-2000:]
        assert "interrupted: the partial lake was removed" in err and not out.exists()
    deadline = time.monotonic() + 20
    while _session_members(proc.pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _session_members(proc.pid) == [], "worker processes outlived the run"


def _report_ctrl_c(queue) -> None:  # noqa: ANN001 (a multiprocessing queue)
    """In a freshly spawned child: is Ctrl-C still blocked, as the spawner left it? Then what
    the worker initializer makes of it. A Ctrl-C sent meanwhile must not stop the child."""
    from generators.lake import ignore_ctrl_c

    blocked = signal.SIGINT in signal.pthread_sigmask(signal.SIG_BLOCK, [])
    os.kill(os.getpid(), signal.SIGINT)  # pressed while the worker was still starting
    ignore_ctrl_c()
    queue.put((blocked, signal.getsignal(signal.SIGINT) is signal.SIG_IGN,
               signal.SIGINT in signal.pthread_sigmask(signal.SIG_BLOCK, [])))


def test_workers_start_with_ctrl_c_blocked_until_they_ignore_it() -> None:
    """A worker still importing when Ctrl-C reaches the process group keeps it pending (no
    traceback of its own); the initializer ignores it, then unblocks it."""
    import multiprocessing as mp

    from generators.lake import sigint_blocked

    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    with sigint_blocked():
        child = ctx.Process(target=_report_ctrl_c, args=(queue,))
        child.start()
    assert queue.get(timeout=120) == (True, True, False)
    child.join(timeout=60)
    assert child.exitcode == 0  # the pending Ctrl-C was discarded, not raised
    assert signal.SIGINT not in signal.pthread_sigmask(signal.SIG_BLOCK, [])  # restored


def test_the_scheduler_starts_workers_with_ctrl_c_blocked(monkeypatch: pytest.MonkeyPatch
                                                         ) -> None:
    """The workers start during the scheduler's first fill of the pool: inside the block."""
    import generators.lake as lake_module

    seen: list[bool] = []

    class Pool:
        def submit(self, fn, unit):  # noqa: ANN001, ANN202
            from concurrent.futures import Future

            seen.append(signal.SIGINT in signal.pthread_sigmask(signal.SIG_BLOCK, []))
            f: Future = Future()
            f.set_result([])
            return f

    units = [lake_module.Unit("dims", 0, i) for i in range(6)]
    lake_module._schedule(Pool(), units, [], 2, lambda recs: None)
    # the first fill (2 * workers units) inside the block, the rest after it
    assert seen == [True] * 4 + [False] * 2


def test_a_run_killed_while_it_empties_the_previous_lake_leaves_one_force_replaces(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`--force` deletes the previous lake before writing: the unfinished marker goes in
    first, so a run killed mid-deletion leaves a directory the next `--force` replaces
    (without it, a half-deleted lake that lost its manifest was refused as "not a lake")."""
    import shutil

    import generators.lake as lake_module
    from generators.lake import UNFINISHED, check_output

    cfg = LakeConfig(sf=0.002, days=2, workers=1, replicas=False)
    out = tmp_path / "lake"
    generate(cfg, out)
    real = shutil.rmtree

    def killed_after_one(path, *a, **k):  # noqa: ANN001, ANN002, ANN003, ANN202
        real(path, *a, **k)
        raise SystemExit("killed")  # stands for SIGKILL: nothing runs after it

    monkeypatch.setattr(lake_module.shutil, "rmtree", killed_after_one)
    with pytest.raises(SystemExit):
        lake_module._empty_marked(out)
    monkeypatch.undo()
    assert (out / UNFINISHED).is_file() and any(out.iterdir())
    (out / MANIFEST).unlink(missing_ok=True)  # whatever the deletion order took first
    check_output(out, force=True)  # replaceable
    assert generate(cfg, out, force=True)["tables"]
    assert not (out / UNFINISHED).exists()


def test_a_stop_while_workers_start_waits_until_they_have_started() -> None:
    """SIGTERM (or Ctrl-C) while the pool starts its workers is acted on once they have
    started: raised mid-start, it cut the start data a spawned worker reads from its pipe,
    and that worker printed a traceback."""
    import os
    import signal

    from generators.lake import _stops_deferred
    from pipeline.signals import terminate_as_interrupt

    reached = []
    with terminate_as_interrupt(), pytest.raises(SystemExit) as stopped, _stops_deferred():
        os.kill(os.getpid(), signal.SIGTERM)
        reached.append("after the signal")  # the block goes on to its end
    assert reached == ["after the signal"] and stopped.value.code == 143
