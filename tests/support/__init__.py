"""Test support shared by every layer; product code never imports it.

- ``receiver``: the webhook receiver (aiohttp on 127.0.0.1, programmable replies).
- ``seeding``: endpoints, events and dead deliveries written by SQL; the webhook body renderer.
- ``topics``: the topic reader (``deliveries`` and ``deadletter`` records from the beginning).
- ``admin_app`` / ``ingest_app``: the admin and ingest apps served in-process over loopback HTTP.
- ``dispatch``: a seeder that announces deliveries like ingest, dispatcher process fixtures, waits.
- ``raw_http``: raw-socket HTTP exchanges; ``json_documents``: JSON documents for exact payloads.
- ``real_kafka`` / ``kafka_scram``: real Apache Kafka clusters; ``ledger``: the ledger check.
"""
