"""Admin service settings: the common variables plus admin tokens and bulk-worker tuning."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from shared.config import (
    CommonSettings,
    env_float,
    env_int,
    load_common,
    parse_admin_tokens,
    refuse_shared_credentials,
)


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


def load_admin_settings(env: Mapping[str, str]) -> AdminSettings:
    """Read and validate the admin service's variables."""
    refuse_shared_credentials(env)
    return AdminSettings(
        common=load_common(env),
        port=env_int(env, "POSTWIRE_ADMIN_PORT", 8082, 1, 65535),
        admin_tokens=parse_admin_tokens(env),
        job_lease_s=env_float(env, "POSTWIRE_ADMIN_JOB_LEASE_S", 10.0, 1.0, 600.0),
        job_poll_interval_s=env_float(env, "POSTWIRE_ADMIN_JOB_POLL_S", 0.5, 0.05, 60.0),
        max_jobs_per_process=env_int(env, "POSTWIRE_ADMIN_MAX_JOBS", 4, 1, 64),
        idempotency_window_s=env_int(env, "POSTWIRE_ADMIN_IDEMPOTENCY_WINDOW_S", 86400, 60,
                                     7 * 86400),
    )
