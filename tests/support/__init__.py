"""Test support that is more than a fixture: helpers that start and stop real external processes
(for instance a real Apache Kafka cluster, ``tests.support.real_kafka``)."""
