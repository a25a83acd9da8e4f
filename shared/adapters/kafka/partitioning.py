"""Which partition a keyed record goes to: ``crc32(key) mod partitions``, in every producer.

aiokafka's default partitioner is Kafka's murmur2 written in pure Python: about 15 us a
record, 11% of the ingest process's CPU in bench/ingest.py's batch phase. ``zlib.crc32`` is
C. Every Postwire producer (ingest, dispatcher, admin, the outbox relays) publishes through
:class:`shared.adapters.kafka.publisher.KafkaPublisher`, which uses this function, so one key
always lands on one partition. Nothing depends on which partition that is: ordering per
(endpoint, ordering key) is enforced by the claim in Postgres, not by Kafka, so a key that
moves (partitions added, producers of two versions during an upgrade) is still delivered in
order. Non-Postwire producers of these topics are not supported anyway.
"""

from __future__ import annotations

import random
import zlib
from collections.abc import Sequence


def partition_for(key: bytes | None, all_partitions: Sequence[int],
                  available: Sequence[int]) -> int:
    """aiokafka partitioner hook: the partition of ``key`` among ``all_partitions`` (taken
    in id order); a record without a key goes to a random available partition."""
    if key is None:
        return random.choice(list(available) or list(all_partitions))
    ordered = sorted(all_partitions)
    return ordered[zlib.crc32(key) % len(ordered)]
