"""Admin service settings: the common variables plus admin tokens and bulk-worker tuning."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

from shared.config import (
    CommonSettings,
    env_float,
    env_int,
    env_str,
    load_common,
    parse_admin_tokens,
    refuse_shared_credentials,
)
from shared.core.errors import ConfigError


@dataclass(frozen=True)
class AdminSettings:
    """Read once at start; a bad value raises ConfigError naming the variable."""

    common: CommonSettings
    port: int
    admin_tokens: tuple[tuple[str, str], ...]   # (operator name, token)
    job_lease_s: float            # a worker owns a bulk job this long past its last step
    job_poll_interval_s: float    # how often an idle worker looks for running jobs
    max_jobs_per_process: int     # bulk jobs one process walks at the same time
    idempotency_window_s: int     # how long a replay's Idempotency-Key is remembered
    console_session_s: int        # an operator's console session ends this long after sign-in
    public_url: str | None        # origin of portal links (else the request's own)
    dispatcher_group: str         # Kafka group whose lag the console overview shows
    lag_sample_interval_s: float  # how often the console samples that lag


def load_admin_settings(env: Mapping[str, str]) -> AdminSettings:
    """Read and validate the admin service's variables."""
    refuse_shared_credentials(env)
    common = load_common(env)
    return AdminSettings(
        common=common,
        port=env_int(env, "POSTWIRE_ADMIN_PORT", 8082, 1, 65535),
        admin_tokens=parse_admin_tokens(env),
        job_lease_s=env_float(env, "POSTWIRE_ADMIN_JOB_LEASE_S", 10.0, 1.0, 600.0),
        job_poll_interval_s=env_float(env, "POSTWIRE_ADMIN_JOB_POLL_S", 0.5, 0.05, 60.0),
        max_jobs_per_process=env_int(env, "POSTWIRE_ADMIN_MAX_JOBS", 4, 1, 64),
        idempotency_window_s=env_int(env, "POSTWIRE_ADMIN_IDEMPOTENCY_WINDOW_S", 86400, 60,
                                     7 * 86400),
        console_session_s=env_int(env, "POSTWIRE_CONSOLE_SESSION_S", 28800, 60, 7 * 86400),
        public_url=_public_url(env),
        dispatcher_group=env_str(env, "POSTWIRE_DISPATCHER_GROUP",
                                 f"{common.topic_prefix}dispatcher"),
        lag_sample_interval_s=env_float(env, "POSTWIRE_CONSOLE_LAG_INTERVAL_S", 10.0, 1.0, 600.0),
    )


def _public_url(env: Mapping[str, str]) -> str | None:
    """``POSTWIRE_ADMIN_PUBLIC_URL``: an absolute http(s) origin, or unset."""
    raw = env.get("POSTWIRE_ADMIN_PUBLIC_URL", "").strip()
    if not raw:
        return None
    parts = urlsplit(raw)
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.query or parts.fragment:
        raise ConfigError(f"POSTWIRE_ADMIN_PUBLIC_URL={raw!r} is not valid: expected an "
                          "absolute http(s) URL such as https://admin.example.com")
    return raw.rstrip("/")
