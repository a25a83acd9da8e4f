"""Kafka adapters: topic creation, the self-healing publisher, partitioning, security.

Importing this package makes every aiokafka client of the process ask metadata requests not to
create topics, and remember the cluster id metadata answers carry (``metadata.py``): only
``topics.ensure_topics`` creates topics.
"""

from shared.adapters.kafka.metadata import forbid_auto_topic_creation, record_cluster_ids

forbid_auto_topic_creation()
record_cluster_ids()
