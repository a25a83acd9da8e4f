"""Ingest settings: the common variables plus API keys and group-commit tuning."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from shared.config import (
    CommonSettings,
    env_float,
    env_int,
    load_common,
    parse_api_keys,
    parse_scoped_api_keys,
    refuse_shared_credentials,
)
from shared.config_http import load_denied_target_ports
from shared.core.api_keys import ApiKey


@dataclass(frozen=True)
class IngestSettings:
    """Read once at start; a bad value raises ConfigError naming the variable."""

    common: CommonSettings
    port: int
    api_keys: tuple[str, ...]
    batch_max_events: int          # a group commit closes at this many events...
    batch_max_wait_ms: int         # ...or this long after its first event arrived
    reconcile_max_ids: int = 20_000_000  # ids one reconciliation upload may hold
    reconcile_concurrency: int = 2       # reconciliations one process runs at once
    reconcile_upload_timeout_s: float = 3600.0  # a reconciliation's ids must arrive within
    denied_target_ports: frozenset[int] = frozenset()  # endpoint URLs may not use these
    api_key_scopes: tuple[ApiKey, ...] = ()  # every key with its accounts (api_keys' order)


def load_ingest_settings(env: Mapping[str, str]) -> IngestSettings:
    """Read and validate the ingest service's variables."""
    refuse_shared_credentials(env)
    return IngestSettings(
        common=load_common(env),
        port=env_int(env, "POSTWIRE_INGEST_PORT", 8080, 1, 65535),
        api_keys=parse_api_keys(env),
        api_key_scopes=parse_scoped_api_keys(env),
        batch_max_events=env_int(env, "POSTWIRE_INGEST_BATCH_MAX_EVENTS", 500, 1, 5000),
        batch_max_wait_ms=env_int(env, "POSTWIRE_INGEST_BATCH_MAX_WAIT_MS", 30, 0, 1000),
        reconcile_max_ids=env_int(env, "POSTWIRE_RECONCILE_MAX_IDS", 20_000_000, 1,
                                  1_000_000_000),
        reconcile_concurrency=env_int(env, "POSTWIRE_RECONCILE_CONCURRENCY", 2, 1, 64),
        reconcile_upload_timeout_s=env_float(env, "POSTWIRE_RECONCILE_UPLOAD_TIMEOUT_S", 3600.0,
                                             1.0, 86400.0),
        denied_target_ports=load_denied_target_ports(env),
    )
