"""Merchant endpoints, shared by every service that manages them (the ingest API, the admin
service's console and merchant portal): request validation (:mod:`.validation`), SQL
(:mod:`.store`) and the transactional operations both APIs run (:mod:`.operations`)."""
