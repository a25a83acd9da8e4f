"""Kafka adapters: topic creation, the self-healing publisher, partitioning, security.

Importing this package makes every aiokafka client of the process ask metadata requests not to
create topics (``metadata.py``): only ``topics.ensure_topics`` creates them.
"""

from shared.adapters.kafka.metadata import forbid_auto_topic_creation

forbid_auto_topic_creation()
