"""The data contract: table names, file schemas, key columns, lineage and writer settings.

Users' queries, the scrub and the audit all rely on these names. Extend freely; change only with
a reason in the README.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pyarrow as pa

SCHEMA_VERSION = 1
TS = pa.timestamp("us", tz="UTC")
DICT = pa.dictionary(pa.int32(), pa.string())

DEFAULT_REGIONS = (
    "us-east-1",
    "us-west-2",
    "eu-west-1",
    "eu-central-1",
    "ap-northeast-1",
    "sa-east-1",
)

# Writer settings shared by every file: zstd, statistics on, one row group per ROW_GROUP_ROWS.
COMPRESSION = "zstd"
COMPRESSION_LEVEL = 1
ROW_GROUP_ROWS = 65_536
DATA_PAGE_SIZE = 1 << 20


@dataclass(frozen=True)
class TableSpec:
    name: str
    kind: str  # "dimension" (partitioned by home region) or "fact" (by region + layout)
    schema: pa.Schema
    keys: tuple[str, ...]  # key columns (the data contract)
    reach: str  # the key column through which an erased customer reaches this table
    dictionary: tuple[str, ...] = ()  # low-cardinality strings: dictionary-encoded
    bloom: tuple[str, ...] = ()  # key columns that get Parquet bloom filters
    sort_date: tuple[str, ...] = ()  # sort order inside a file, date layout
    sort_bucket: tuple[str, ...] = ()  # sort order inside a file, bucket layout
    bucket_key: str = "customer_id"  # what the bucket layout hashes
    uncompressed: tuple[str, ...] = ()  # columns that do not compress (synthetic PCM)
    row_group_rows: int = ROW_GROUP_ROWS
    notes: str = ""
    pii_text: tuple[str, ...] = field(default=())  # free-text columns that may hold PII

    def __post_init__(self) -> None:
        # Low-cardinality strings are dictionary-typed in the files (and in every rewrite).
        fields = [f.with_type(DICT) if f.name in self.dictionary else f for f in self.schema]
        object.__setattr__(self, "schema", pa.schema(fields))

    def file_schema(self, layout: str) -> pa.Schema:
        """The columns stored in a file. A Hive partition key is never also a file column,
        so `date` lives in the path for the date layout and in the file for the bucket one."""
        if self.name == "usage_daily" and layout == "date":
            return self.schema.remove(self.schema.get_field_index("date"))
        return self.schema


def _s(*fields: tuple[str, pa.DataType]) -> pa.Schema:
    return pa.schema([pa.field(n, t, nullable=n not in {"customer_id"}) for n, t in fields])


CUSTOMERS = TableSpec(
    "customers", "dimension",
    _s(("customer_id", pa.int64()), ("full_name", pa.string()), ("email", pa.string()),
       ("phone", pa.string()), ("street_address", pa.string()), ("city", pa.string()),
       ("country", pa.string()), ("language", pa.string()), ("plan", pa.string()),
       ("signup_date", pa.date32())),
    keys=("customer_id",), reach="customer_id",
    dictionary=("city", "country", "language", "plan"), bloom=("customer_id",),
    sort_date=("customer_id",), sort_bucket=("customer_id",),
    pii_text=("full_name", "email", "phone", "street_address", "city"),
)
DEVICES = TableSpec(
    "devices", "dimension",
    _s(("device_id", pa.int64()), ("customer_id", pa.int64()), ("device_type", pa.string()),
       ("device_name", pa.string()), ("firmware", pa.string()), ("registered_at", TS)),
    keys=("device_id", "customer_id"), reach="customer_id",
    dictionary=("device_type", "firmware"), bloom=("customer_id",),
    sort_date=("customer_id", "device_id"), sort_bucket=("customer_id", "device_id"),
    pii_text=("device_name",),
)
RECORDINGS = TableSpec(
    "recordings", "fact",
    _s(("recording_id", pa.int64()), ("customer_id", pa.int64()), ("device_id", pa.int64()),
       ("started_at", TS), ("local_hour", pa.int8()), ("duration_ms", pa.int32()),
       ("wake_word", pa.string()), ("intent", pa.string()), ("asr_confidence", pa.float32())),
    keys=("recording_id", "customer_id", "device_id"), reach="customer_id",
    dictionary=("wake_word", "intent"), bloom=("customer_id", "recording_id"),
    sort_date=("started_at", "recording_id"), sort_bucket=("customer_id", "started_at"),
)
AUDIO = TableSpec(
    "audio", "fact",
    _s(("recording_id", pa.int64()), ("customer_id", pa.int64()), ("codec", pa.string()),
       ("sample_rate", pa.int32()), ("duration_ms", pa.int32()), ("payload", pa.binary())),
    keys=("recording_id", "customer_id"), reach="customer_id",
    dictionary=("codec",), bloom=("customer_id", "recording_id"),
    sort_date=("started_at", "recording_id"), sort_bucket=("customer_id", "started_at"),
    uncompressed=("payload",), row_group_rows=16_384,
)
TRANSCRIPTS = TableSpec(
    "transcripts", "fact",
    _s(("recording_id", pa.int64()), ("customer_id", pa.int64()), ("language", pa.string()),
       ("asr_model", pa.string()), ("text", pa.string())),
    keys=("recording_id", "customer_id"), reach="customer_id",
    dictionary=("language", "asr_model"), bloom=("customer_id", "recording_id"),
    sort_date=("started_at", "recording_id"), sort_bucket=("customer_id", "started_at"),
    pii_text=("text",),
)
ACTIONS = TableSpec(
    "actions", "fact",
    _s(("action_id", pa.int64()), ("recording_id", pa.int64()), ("action_type", pa.string()),
       ("target", pa.string()), ("skill_id", pa.int32()), ("status", pa.string()),
       ("latency_ms", pa.int32()), ("executed_at", TS)),
    keys=("action_id", "recording_id"), reach="recording_id",
    dictionary=("action_type", "status"), bloom=("recording_id",),
    sort_date=("executed_at", "action_id"), sort_bucket=("recording_id", "action_id"),
    bucket_key="recording_id", pii_text=("target",),
)
SKILL_LINKS = TableSpec(
    "skill_links", "dimension",
    _s(("customer_id", pa.int64()), ("skill_id", pa.int32()), ("skill_user_id", pa.string()),
       ("skill_name", pa.string()), ("linked_at", TS)),
    keys=("customer_id", "skill_id", "skill_user_id"), reach="customer_id",
    dictionary=("skill_name",), bloom=("customer_id", "skill_user_id"),
    sort_date=("customer_id", "skill_id"), sort_bucket=("customer_id", "skill_id"),
)
SKILL_EVENTS = TableSpec(
    "skill_events", "fact",
    _s(("event_id", pa.int64()), ("skill_id", pa.int32()), ("skill_user_id", pa.string()),
       ("event_type", pa.string()), ("payload_json", pa.string()), ("occurred_at", TS)),
    keys=("event_id", "skill_id", "skill_user_id"), reach="skill_user_id",
    dictionary=("event_type",), bloom=("skill_user_id",),
    sort_date=("occurred_at", "event_id"), sort_bucket=("skill_user_id", "occurred_at"),
    bucket_key="skill_user_id", pii_text=("payload_json",),
)
USAGE_DAILY = TableSpec(
    "usage_daily", "fact",
    _s(("customer_id", pa.int64()), ("date", pa.date32()), ("recordings", pa.int32()),
       ("audio_seconds", pa.float64()), ("actions", pa.int32()), ("top_intent", pa.string())),
    keys=("customer_id", "date"), reach="customer_id",
    dictionary=("top_intent",), bloom=("customer_id",),
    sort_date=("customer_id",), sort_bucket=("customer_id", "date"),
)

TABLES: dict[str, TableSpec] = {
    t.name: t
    for t in (CUSTOMERS, DEVICES, RECORDINGS, AUDIO, TRANSCRIPTS, ACTIONS, SKILL_LINKS,
              SKILL_EVENTS, USAGE_DAILY)
}
FACT_TABLES = tuple(n for n, t in TABLES.items() if t.kind == "fact")
DIMENSION_TABLES = tuple(n for n, t in TABLES.items() if t.kind == "dimension")

# Lineage: how a customer reaches each key kind (key kind -> (table holding the map, column)).
# The scrub resolves keys in this order; mapping tables are erased last.
LINEAGE = {
    "customer_id": None,
    "device_id": ("devices", "customer_id"),
    "recording_id": ("recordings", "customer_id"),
    "skill_user_id": ("skill_links", "customer_id"),
}
