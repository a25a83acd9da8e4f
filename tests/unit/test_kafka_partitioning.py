"""The partitioner every Postwire producer uses."""

from __future__ import annotations

import zlib
from collections import Counter

from shared.adapters.kafka.partitioning import partition_for

PARTITIONS = list(range(16))


def test_a_key_always_lands_on_the_same_partition_whatever_the_listing_order() -> None:
    key = b"ep_01JD4ZQ7W6C2V8Y3M5N9P0R1ST"
    expected = zlib.crc32(key) % 16
    assert partition_for(key, PARTITIONS, PARTITIONS) == expected
    assert partition_for(key, list(reversed(PARTITIONS)), [3]) == expected  # availability ignored


def test_endpoint_keys_spread_over_every_partition() -> None:
    counts = Counter(partition_for(f"ep_01JD{i:022d}".encode(), PARTITIONS, PARTITIONS)
                     for i in range(16000))
    assert set(counts) == set(PARTITIONS)
    assert max(counts.values()) < 1.2 * 1000 and min(counts.values()) > 0.8 * 1000


def test_a_record_without_key_goes_to_an_available_partition() -> None:
    picks = {partition_for(None, PARTITIONS, [2, 5]) for _ in range(200)}
    assert picks == {2, 5}
    assert partition_for(None, [7], []) == 7
