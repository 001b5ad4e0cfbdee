"""The CLI in child processes forked from a warm server.

The crash tests kill ~40 jobs with SIGKILL; a fresh interpreter spent ~2 s of each importing
pyarrow, polars, numba and typer before the job began. This module, run as a server, imports
them once, then forks one child per command: the same command in its own process, killed
alike, started in milliseconds. What a fork cannot give, `fresh=True` runs as before, through
the real executable's entry point: its allocator setting (made before pyarrow loads) and the
interpreter's own exit, which a forked child skips (it leaves with os._exit once the command
returns its status).

The server runs no Python thread and no engine work; the native threads its imports start
(jemalloc's, OpenBLAS's, an idle Polars cleaner, DuckDB's default connection's scheduler) are
fork-safe or unused by the child. Should a child ever hang on an inherited lock, it is killed
and the test fails after `timeout`, naming the command."""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import functools
import json
import os
import select
import signal
import subprocess
import sys
import tempfile
import time
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


def _die_with_server() -> None:
    """Linux: SIGKILL when the (single-threaded) server ends, so that no job outlives it."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def _run_child(request: dict) -> None:
    """In the forked child: a fresh foreground process's signals and the caller's whole
    environment, output to a file, the command, exit with its status. Never returns."""
    code = 1
    try:
        _die_with_server()
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        os.environ.clear()
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
    """One JSON request per line on stdin; replies with the child's pid, then its status.
    Ends at the end of its input; a job running when the test process is gone is killed."""
    import importlib

    parent = os.getppid()
    for name in PRELOAD:
        importlib.import_module(name)
    for line in sys.stdin:
        pid = os.fork()
        if pid == 0:
            _run_child(json.loads(line))
        print(json.dumps({"pid": pid}), flush=True)
        while not (ended := os.waitpid(pid, os.WNOHANG))[0]:
            if os.getppid() != parent:
                os.kill(pid, signal.SIGKILL)
            time.sleep(0.005)
        print(json.dumps({"returncode": os.waitstatus_to_exitcode(ended[1])}), flush=True)


class _Server:
    """The server process and the replies read from it (its own buffer, so that a reply
    already read from the pipe is never waited for on the pipe)."""

    def __init__(self) -> None:
        # its own errors (an import that fails) go to a file named when it ends
        self.log = tempfile.NamedTemporaryFile(  # noqa: SIM115 - open while the server runs
            prefix="voicescrub-cli-server-", suffix=".log", delete=False)
        self.proc = subprocess.Popen([sys.executable, "-m", "tests.pipeline.cli_child"],
                                     cwd=REPO, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=self.log)
        self.buffer = b""
        atexit.register(self.close)

    def ask(self, request: dict) -> None:
        self.proc.stdin.write(json.dumps(request).encode() + b"\n")
        self.proc.stdin.flush()

    def reply(self, timeout: float | None) -> dict:
        fd = self.proc.stdout.fileno()
        while b"\n" not in self.buffer:
            if timeout is not None and not select.select([fd], [], [], timeout)[0]:
                raise TimeoutError
            chunk = os.read(fd, 4096)
            if not chunk:
                raise RuntimeError(f"the CLI server ended (status {self.proc.poll()}); "
                                   f"its errors: {self.log.name}")
            self.buffer += chunk
        line, self.buffer = self.buffer.split(b"\n", 1)
        return json.loads(line)

    def close(self) -> None:
        """End of input, then the server ends once its child (if any) has."""
        try:
            self.proc.stdin.close()
            self.proc.wait(timeout=30)
        except (OSError, subprocess.TimeoutExpired):
            self.proc.kill()
        self.log.close()
        if self.proc.returncode == 0:
            os.unlink(self.log.name)


@functools.cache
def _server() -> _Server:
    return _Server()


def _fresh(args: list[str], env: dict[str, str], timeout: float) -> Ended:
    """Through the real executable's entry point, in a new interpreter."""
    proc = subprocess.run([sys.executable, "-c", "from pipeline.entry import main; main()",
                           *args], cwd=REPO, env={**os.environ, **env}, capture_output=True,
                          text=True, timeout=timeout)
    return Ended(proc.returncode, proc.stdout + proc.stderr)


def run_cli(args: list[str], env: dict[str, str], scratch: Path, timeout: float = 180,
            fresh: bool = False) -> Ended:
    """`voicescrub ARGS` with ENV added to this process's environment, in its own process;
    its output is kept in SCRATCH."""
    if fresh:
        return _fresh(args, env, timeout)
    server = _server()
    output = scratch / f"cli-{os.getpid()}-{next(_calls)}.out"
    server.ask({"args": list(args), "env": {**os.environ, **env}, "output": str(output)})
    pid = None
    try:
        pid = server.reply(120)["pid"]
        returncode = server.reply(timeout)["returncode"]
    except BaseException as e:
        # whatever stopped the wait (a timeout, Ctrl-C): the child goes, and its status is
        # read, so that the next command's replies are its own
        if pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        try:
            server.reply(30)
        except BaseException:  # noqa: BLE001 - out of step: the next command starts a new one
            server.close()
            _server.cache_clear()
        if isinstance(e, TimeoutError):
            raise TimeoutError(f"voicescrub {' '.join(args)} ran over {timeout} s") from None
        raise
    return Ended(returncode, output.read_text(errors="replace") if output.exists() else "")


if __name__ == "__main__":
    serve()
