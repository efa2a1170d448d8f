"""Stable placement of partition keys, shared by every adapter."""

from __future__ import annotations

import zlib


def partition_for(key: str, partitions: int) -> int:
    """CRC-32 of the UTF-8 key modulo the partition count.

    Computed here and passed explicitly to the broker so the Kafka and the
    embedded log place every key identically, independent of client defaults.
    Changing this function moves aggregates between partitions: never do it
    for an existing log.
    """
    if partitions <= 0:
        raise ValueError("partitions must be positive")
    return zlib.crc32(key.encode("utf-8")) % partitions
