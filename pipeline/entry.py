"""The `voicescrub` executable: the process's allocator settings first, then the CLI."""

from __future__ import annotations

import sys

from pipeline.allocator import keep_freed_pages

SCRUBBING = ("scrub",)


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] in SCRUBBING:
        keep_freed_pages()  # before pyarrow loads: the CLI's imports load it
    from pipeline.cli import app

    app()
