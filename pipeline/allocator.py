"""Arrow's allocator settings for a process that scrubs.

Arrow's allocator (mimalloc) gives freed pages back to the OS 10 ms after they are freed. A
scrub frees and allocates row-group buffers of the same sizes all the time, so the pages were
faulted in and zeroed again and again (about 5 % of the arrow strategy's wall time, measured
with bench.ab). A scrubbing process keeps freed pages for reuse instead; its memory stays
bounded by the row groups in flight. The generator's workers do the opposite (they give pages
back at once: what they hold is what their memory bound is about), so this is set only by the
processes that scrub: the `scrub` command and the benchmark's child processes (floors too).
"""

from __future__ import annotations

import os
import sys

PURGE_DELAY = "MIMALLOC_PURGE_DELAY"


def keep_freed_pages() -> bool:
    """Ask mimalloc to keep freed pages. It reads its options when pyarrow loads, so only a
    process that has not loaded pyarrow yet can; a value the caller set wins. Returns whether
    the process runs with freed pages kept."""
    if "pyarrow" not in sys.modules:
        os.environ.setdefault(PURGE_DELAY, "-1")
    return os.environ.get(PURGE_DELAY) == "-1"
