"""voicescrub: the scrub pipeline."""

import os

# Arrow's allocator (mimalloc) gives freed pages back to the OS 10 ms after they are freed. A
# scrub frees and allocates row-group buffers of the same sizes all the time, so the pages
# were faulted in and zeroed again and again (about 5 % of the arrow strategy's wall time,
# measured with bench.ab). Freed pages are kept for reuse instead; memory stays bounded by the
# row groups in flight. Read when pyarrow loads, so it is set here, before any pyarrow import
# of the package; a value the caller set wins.
os.environ.setdefault("MIMALLOC_PURGE_DELAY", "-1")
