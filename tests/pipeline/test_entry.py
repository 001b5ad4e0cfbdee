"""The executable's start: Ctrl-C or SIGTERM while the CLI loads is one line, not a traceback."""

from __future__ import annotations

import signal
import subprocess
import sys

import pytest

# Sends the signal at the moment the CLI module is imported (the heavy imports), then runs the
# entry point as the `voicescrub` script does.
_SCRIPT = """
import builtins, os, signal, sys
import pipeline.entry as entry
real_import = builtins.__import__
def importing(name, *a, **k):
    if name == "pipeline.cli":
        os.kill(os.getpid(), {signum})
    return real_import(name, *a, **k)
builtins.__import__ = importing
sys.argv = ["voicescrub", "strategies"]
entry.main()
"""


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_stop_while_the_cli_loads_is_one_line(signum: int) -> None:
    r = subprocess.run([sys.executable, "-c", _SCRIPT.format(signum=int(signum))],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 128 + signum, r.stderr
    assert r.stderr == "interrupted while starting: nothing was done\n"
