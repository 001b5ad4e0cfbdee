"""Thrift's compact protocol, as far as voicescrub reads it by hand: field headers and varints.

Parquet keeps some of what a rewrite must reproduce where pyarrow does not show it: a bloom
filter's header (`pipeline/bloom.py`) and a page header's CRC field (`pipeline/lake.py`).
"""

from __future__ import annotations

STOP, I32, STRUCT = 0, 5, 12


class CompactError(ValueError):
    """Bytes that are not the compact Thrift this reader expects."""


def varint(buf: bytes | memoryview, pos: int, max_bytes: int) -> tuple[int, int]:
    """An unsigned LEB128 varint at pos: (value, next pos)."""
    value = shift = 0
    for i in range(max_bytes):
        if pos + i >= len(buf):
            raise CompactError("cut short")
        b = buf[pos + i]
        value |= (b & 0x7F) << shift
        shift += 7
        if not b & 0x80:
            return value, pos + i + 1
    raise CompactError("overlong varint")


def zigzag(n: int) -> int:
    return (n >> 1) ^ -(n & 1)


def field(buf: bytes | memoryview, pos: int, last: int) -> tuple[int, int, int]:
    """A field header at pos, after field `last`: (field id, type, next pos); type 0 is STOP."""
    if pos >= len(buf):
        raise CompactError("cut short")
    b = buf[pos]
    pos += 1
    if b == 0:
        return 0, STOP, pos
    typ, delta = b & 0x0F, b >> 4
    if delta:
        return last + delta, typ, pos
    raw, pos = varint(buf, pos, 3)
    return zigzag(raw), typ, pos
