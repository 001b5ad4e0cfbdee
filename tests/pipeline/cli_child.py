"""The CLI in child processes forked from a warm server.

The crash tests kill ~40 jobs with SIGKILL; a fresh interpreter spent ~2 s of each importing
pyarrow, polars, numba and typer before the job began. This module, run as a server, imports
them once, then forks one child per command: the same command in its own process, killed
alike, started in milliseconds. The server is single-threaded, so forking it is safe."""

from __future__ import annotations

import atexit
import functools
import json
import os
import select
import signal
import subprocess
import sys
import traceback
from dataclasses import dataclass
from itertools import count
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PRELOAD = ("pipeline.cli", "pipeline.scrub", "pipeline.strategies.cow_arrow", "pipeline.formats",
           "pipeline.commit", "pipeline.damage", "pipeline.receipt", "generators.lake")
_calls = count()


@dataclass(frozen=True)
class Ended:
    returncode: int  # as subprocess gives it: -9 when killed by SIGKILL
    stderr: str  # stdout and stderr, interleaved


def _run_child(request: dict) -> None:
    """In the forked child: a fresh foreground process's signals, output to a file, the
    command, exit with its status. Never returns."""
    code = 1
    try:
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        os.environ.update(request["env"])
        null = os.open(os.devnull, os.O_RDONLY)
        out = os.open(request["output"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.dup2(null, 0)
        os.dup2(out, 1)
        os.dup2(out, 2)
        from pipeline.cli import app

        try:
            app(args=request["args"], prog_name="voicescrub")
            code = 0
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    except BaseException:  # noqa: BLE001 - reported in the output, as an interpreter would
        traceback.print_exc()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def serve() -> None:
    """One JSON request per line on stdin; replies with the child's pid, then its status."""
    import importlib

    for name in PRELOAD:
        importlib.import_module(name)
    for line in sys.stdin:
        pid = os.fork()
        if pid == 0:
            _run_child(json.loads(line))
        print(json.dumps({"pid": pid}), flush=True)
        _, status = os.waitpid(pid, 0)
        print(json.dumps({"returncode": os.waitstatus_to_exitcode(status)}), flush=True)


@functools.cache
def _server() -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-m", "tests.pipeline.cli_child"], cwd=REPO,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    atexit.register(proc.kill)
    return proc


def _reply(proc: subprocess.Popen, timeout: float | None) -> dict:
    if timeout is not None and not select.select([proc.stdout], [], [], timeout)[0]:
        raise TimeoutError
    line = proc.stdout.readline()
    if not line:
        raise RuntimeError(f"the CLI server ended (status {proc.poll()})")
    return json.loads(line)


def run_cli(args: list[str], env: dict[str, str], scratch: Path,
            timeout: float = 600) -> Ended:
    """`voicescrub ARGS` with ENV added, in its own process; its output is kept in SCRATCH."""
    proc = _server()
    output = scratch / f"cli-{os.getpid()}-{next(_calls)}.out"
    proc.stdin.write(json.dumps({"args": list(args), "env": env, "output": str(output)}) + "\n")
    proc.stdin.flush()
    pid = _reply(proc, 120)["pid"]
    try:
        returncode = _reply(proc, timeout)["returncode"]
    except TimeoutError:
        os.kill(pid, signal.SIGKILL)
        _reply(proc, None)
        raise TimeoutError(f"voicescrub {' '.join(args)} ran over {timeout} s") from None
    return Ended(returncode, output.read_text(errors="replace") if output.exists() else "")


if __name__ == "__main__":
    serve()
