"""Postwire's Kafka clients never let a metadata request create a topic.

A broker with ``auto.create.topics.enable`` (Apache Kafka's default; Tansu always) creates a
topic that a Metadata request names, with the broker's default partition count. After a broker
lost its topics (restarted empty, topic deleted), the first producer to look the topic up would
re-create it that way, racing :func:`shared.adapters.kafka.topics.ensure_topics`, and a topic
with another partition count moves keys to other partitions and stops every service
(``TopicMismatch``). aiokafka asks for auto-creation on every metadata request it makes, with no
setting to turn it off, so :func:`forbid_auto_topic_creation` makes the request class that its
client uses default to ``allow_auto_topic_creation=False`` (Metadata v4 and later; brokers too
old for v4 are not supported). Topics are then created only by ``ensure_topics``, with the
configured partitions and replication factor; a producer that finds its topic missing fails
its send, and the publisher re-creates the topics before it tries again.

It is applied when ``shared.adapters.kafka`` is imported, so every process that talks to Kafka
through Postwire code has it; calling it again changes nothing.

:func:`record_cluster_ids` (applied at the same time) keeps the cluster id of each metadata
answer on the client's cluster metadata, which aiokafka otherwise drops: a cluster that was
wiped and formatted again answers with a new id, one of the signals that its logs are gone
(``services.dispatcher.recovery``). :func:`cluster_id_of` reads it.
"""

from __future__ import annotations

from typing import Any

import aiokafka.client
from aiokafka.cluster import ClusterMetadata
from aiokafka.protocol.metadata import MetadataRequest

_CLUSTER_ID_ATTR = "postwire_cluster_id"


class NoAutoCreateMetadataRequest(MetadataRequest):  # type: ignore[misc]
    """aiokafka's MetadataRequest, with ``allow_auto_topic_creation`` False unless given."""

    def __init__(self, topics: list[str] | None = None,
                 allow_auto_topic_creation: bool | None = None) -> None:
        super().__init__(topics, False if allow_auto_topic_creation is None
                         else allow_auto_topic_creation)


def forbid_auto_topic_creation() -> None:
    """Make every aiokafka client in this process send metadata requests that do not create
    topics (see the module docstring). Idempotent."""
    client_module: Any = aiokafka.client
    client_module.MetadataRequest = NoAutoCreateMetadataRequest


def auto_topic_creation_forbidden() -> bool:
    """True once :func:`forbid_auto_topic_creation` is in effect."""
    client_module: Any = aiokafka.client
    return client_module.MetadataRequest is NoAutoCreateMetadataRequest


def record_cluster_ids() -> None:
    """Make every aiokafka cluster metadata in this process remember the ``cluster_id`` of the
    last metadata answer it applied (Metadata v2 and later carry it). Idempotent."""
    cls: Any = ClusterMetadata
    original = cls.update_metadata
    if getattr(original, "postwire_records_cluster_id", False):
        return

    def update_metadata(self: Any, metadata: Any) -> Any:
        cluster_id = getattr(metadata, "cluster_id", None)
        if cluster_id and metadata.brokers:
            setattr(self, _CLUSTER_ID_ATTR, cluster_id)
        return original(self, metadata)

    update_metadata.postwire_records_cluster_id = True  # type: ignore[attr-defined]
    cls.update_metadata = update_metadata


def cluster_id_of(cluster: object) -> str | None:
    """The cluster id of the last metadata answer ``cluster`` (aiokafka's ClusterMetadata,
    e.g. ``consumer._client.cluster``) applied, or None before the first one."""
    value = getattr(cluster, _CLUSTER_ID_ATTR, None)
    return value if isinstance(value, str) else None
