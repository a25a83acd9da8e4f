"""aiokafka's cluster metadata remembers the cluster id of the metadata answers it applies
(``shared.adapters.kafka.metadata.record_cluster_ids``, in effect once the package is
imported): the dispatcher compares it to notice a cluster that was wiped and formatted again."""

from __future__ import annotations

from aiokafka.cluster import ClusterMetadata
from aiokafka.protocol.metadata import MetadataResponse_v2

import shared.adapters.kafka  # noqa: F401  (applies the hooks)
from shared.adapters.kafka.metadata import cluster_id_of

BROKERS = [(0, "127.0.0.1", 9092, None)]


def _answer(cluster_id: str, brokers: list[tuple[int, str, int, None]] = BROKERS
            ) -> MetadataResponse_v2:
    return MetadataResponse_v2(brokers, cluster_id, 0, [])


def test_the_last_answer_s_cluster_id_is_kept() -> None:
    cluster = ClusterMetadata()
    assert cluster_id_of(cluster) is None
    cluster.update_metadata(_answer("first"))
    assert cluster_id_of(cluster) == "first"
    assert [b.nodeId for b in cluster.brokers()] == [0]  # aiokafka's own update still ran
    cluster.update_metadata(_answer("second"))
    assert cluster_id_of(cluster) == "second"


def test_an_answer_without_brokers_changes_nothing() -> None:
    cluster = ClusterMetadata()
    cluster.update_metadata(_answer("kept"))
    cluster.update_metadata(_answer("ignored", brokers=[]))
    assert cluster_id_of(cluster) == "kept"
