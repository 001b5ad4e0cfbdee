"""Generator settings in one typed object, validated before anything is written."""

from __future__ import annotations

import datetime as dt
import os
from dataclasses import asdict, dataclass, field

from generators.schemas import DEFAULT_REGIONS
from generators.vocab import REGION_LOCALES

GENERATOR_VERSION = "1.1.0"  # 1.1: a file holds at most one chunk (65,536 recordings)
CUSTOMERS_PER_SF = 100_000
RECORDINGS_PER_CUSTOMER = 100  # mean over the whole period: SF 1 = 10M recordings
WAV_HEADER_BYTES = 44
LAYOUTS = ("date", "bucket")


class ConfigError(ValueError):
    """A bad generator argument: reported on one line, nothing written."""


@dataclass(frozen=True)
class LakeConfig:
    sf: float = 1.0
    seed: int = 42
    layout: str = "date"
    regions: tuple[str, ...] = DEFAULT_REGIONS
    days: int = 30
    start_date: dt.date = dt.date(2026, 10, 1)
    replicas: bool = True
    audio_bytes: int = 200  # whole WAV payload: 44-byte header + 16-bit PCM
    buckets: int = 0  # 0 = sized from sf so bucket files stay ~constant in size
    workers: int = 0  # 0 = all cores
    chunk_rows: int = 65_536  # rows generated at once per worker (one row group): bounds memory
    bloom_filters: bool = False  # cost 2x write time; little use on the date layout
    page_checksums: bool = False  # a CRC-32 in every page header, verified by the scrub's reads
    extra: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not (0 < self.sf < float("inf")):
            raise ConfigError(f"--sf must be a positive number, got {self.sf}")
        if self.seed < 0 or self.seed >= 2**32:
            raise ConfigError(f"--seed must be in [0, 2^32), got {self.seed}")
        if self.layout not in LAYOUTS:
            raise ConfigError(f"--layout must be one of {', '.join(LAYOUTS)}, got {self.layout!r}")
        if not self.regions:
            raise ConfigError("--regions must name at least one region")
        unknown = [r for r in self.regions if r not in REGION_LOCALES]
        if unknown:
            raise ConfigError(
                f"unknown region {unknown[0]!r}; known: {', '.join(REGION_LOCALES)}")
        if len(set(self.regions)) != len(self.regions):
            raise ConfigError("--regions lists a region twice")
        if self.replicas and len(self.regions) < 2:
            raise ConfigError("--replicas needs at least two regions (use --no-replicas)")
        if not (1 <= self.days <= 4000):
            raise ConfigError(f"--days must be between 1 and 4000, got {self.days}")
        if self.audio_bytes < WAV_HEADER_BYTES + 2 or self.audio_bytes % 2:
            raise ConfigError(
                f"--audio-bytes must be an even number >= {WAV_HEADER_BYTES + 2}, "
                f"got {self.audio_bytes}")
        if self.buckets < 0 or self.buckets > 4096:
            raise ConfigError(f"--buckets must be 0 (sized from --sf) or between 1 and 4096, "
                              f"got {self.buckets}")
        if self.buckets and self.layout != "bucket":
            raise ConfigError(f"--buckets {self.buckets} is for --layout bucket; the "
                              f"{self.layout} layout has no buckets")
        if self.workers < 0:
            raise ConfigError(f"--workers must be >= 0, got {self.workers}")
        if self.n_customers >= 1 << 28:
            raise ConfigError(f"--sf {self.sf} is too large (at most 2^28 customers)")

    @property
    def n_customers(self) -> int:
        return max(10, round(CUSTOMERS_PER_SF * self.sf))

    @property
    def n_buckets(self) -> int:
        if self.buckets:
            return self.buckets
        # ~300k recordings per bucket across regions, at least 4 buckets.
        return max(4, round(32 * self.sf))

    @property
    def n_workers(self) -> int:
        return self.workers or os.cpu_count() or 1

    @property
    def dates(self) -> list[dt.date]:
        return [self.start_date + dt.timedelta(days=d) for d in range(self.days)]

    def replica_of(self) -> dict[str, str]:
        """Origin region -> the paired region that holds its replica (neighbours pair up;
        with an odd count the last region rotates onto the first)."""
        if not self.replicas:
            return {}
        r = self.regions
        pairs = {}
        for i, origin in enumerate(r):
            j = i ^ 1 if (i ^ 1) < len(r) else 0
            pairs[origin] = r[j]
        if len(r) % 2:  # the odd one out: its partner region keeps its replica
            pairs[r[-1]] = r[0]
        return pairs

    def to_json(self) -> dict:
        d = asdict(self)
        d["regions"] = list(self.regions)
        d["start_date"] = self.start_date.isoformat()
        d["n_customers"] = self.n_customers
        d["n_buckets"] = self.n_buckets if self.layout == "bucket" else None
        d.pop("workers")  # does not change content
        d.pop("extra")
        return d
