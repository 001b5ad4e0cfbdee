"""The `voicescrub` executable: the process's allocator settings first, then the CLI."""

from __future__ import annotations

import os
import signal
import sys

SCRUBBING = ("scrub",)
STOPPED_STARTING = b"interrupted while starting: nothing was done\n"


def _stopped_while_starting(signum: int, frame: object) -> None:  # noqa: ARG001
    # Nothing has been read or written yet: one line, not a traceback from inside an import.
    os.write(2, STOPPED_STARTING)
    os._exit(128 + signum)


def main() -> None:
    # The CLI's imports (pyarrow, polars, DuckDB, numba) take a second or more; Ctrl-C or
    # SIGTERM during them ends the process quietly. Each command sets its own handling after.
    # (a signal the caller ignores, as a shell does for a background job, stays ignored)
    previous = {s: signal.signal(s, _stopped_while_starting)
                for s in (signal.SIGINT, signal.SIGTERM)
                if signal.getsignal(s) is not signal.SIG_IGN}
    from pipeline.allocator import keep_freed_pages

    if len(sys.argv) > 1 and sys.argv[1] in SCRUBBING:
        keep_freed_pages()  # before pyarrow loads: the CLI's imports load it
    from pipeline.cli import app

    for s, handler in previous.items():
        signal.signal(s, handler)
    try:
        app()
    except KeyboardInterrupt:
        # only while typer builds the command line: click handles it once a command runs
        os.write(2, STOPPED_STARTING)
        sys.exit(130)
