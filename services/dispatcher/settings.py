"""Dispatcher settings: the common variables plus delivery, backoff and loop tuning.

Every variable is optional except the common required ones (README.md). Units are in the names.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from shared.config import CommonSettings, env_float, env_int, env_str, load_common
from shared.config_http import load_denied_target_ports
from shared.core.backoff import BackoffPolicy
from shared.core.errors import ConfigError
from shared.core.retry import RetryFloors

FIVE_DAYS_S = 5 * 24 * 3600


@dataclass(frozen=True)
class DispatcherSettings:
    """Read once at start; a bad value raises ConfigError naming the variable."""

    common: CommonSettings
    port: int
    group_id: str                      # Kafka consumer group shared by every dispatcher
    backoff: BackoffPolicy             # circuit breaker + auto-disable window
    floors: RetryFloors                # shortest retry delay after a timeout / a 429
    concurrency: int                   # in-flight attempts of this process, all endpoints
    endpoint_concurrency: int          # in-flight attempts of this process for one endpoint
    claim_workers: int                 # concurrent claim transactions (disjoint endpoints)
    waiting_per_endpoint: int          # least an endpoint keeps in memory when memory is full
    lease_margin_s: float              # lease = wait for rate slot + timeout + this margin
    rate_horizon_s: float              # claim a rate-limited delivery at most this far ahead
    scheduler_interval_s: float        # how often due retries are re-published
    sweep_interval_s: float            # how often stuck deliveries are looked for
    sweep_stale_s: float               # not moved this long: re-published (memory holds half)
    drain_s: float                     # SIGTERM: wait this long for in-flight attempts
    kafka_session_timeout_ms: int      # group membership; a dead member is noticed after this
    outcome_batch_max: int             # group commit closes at this many outcomes...
    outcome_batch_wait_ms: int         # ...or this long after the first one arrived that
    #                                    something waits for (a key's successor, a full gate)
    outcome_linger_ms: int             # ...or, when nothing waits for any of them, this long
    claim_linger_ms: int               # a claim worker woken from idle gathers this long
    denied_target_ports: frozenset[int] = frozenset()  # never connect to these ports

    @property
    def delivery_timeout_s(self) -> float:
        return self.common.delivery_timeout_s


def _backoff(env: Mapping[str, str]) -> BackoffPolicy:
    cooloff = env_float(env, "POSTWIRE_CIRCUIT_COOLOFF_S", 5.0, 0.0, 86400.0)
    max_cooloff = env_float(env, "POSTWIRE_CIRCUIT_MAX_COOLOFF_S", max(300.0, cooloff),
                            0.0, 86400.0)
    if max_cooloff < cooloff:
        raise ConfigError(f"POSTWIRE_CIRCUIT_MAX_COOLOFF_S={max_cooloff:g} is not valid: "
                          f"expected at least POSTWIRE_CIRCUIT_COOLOFF_S ({cooloff:g})")
    return BackoffPolicy(
        failure_threshold=env_int(env, "POSTWIRE_CIRCUIT_FAILURE_THRESHOLD", 5, 1, 100000),
        base_cooloff_s=cooloff,
        max_cooloff_s=max_cooloff,
        auto_disable_after_s=env_float(env, "POSTWIRE_ENDPOINT_DISABLE_AFTER_S",
                                       float(FIVE_DAYS_S), 1.0, 365.0 * 86400),
    )


def load_dispatcher_settings(env: Mapping[str, str]) -> DispatcherSettings:
    """Read and validate; raises ConfigError (one line naming the variable) on a bad value."""
    common = load_common(env)
    return DispatcherSettings(
        common=common,
        denied_target_ports=load_denied_target_ports(env),
        port=env_int(env, "POSTWIRE_DISPATCHER_PORT", 8081, 1, 65535),
        group_id=env_str(env, "POSTWIRE_DISPATCHER_GROUP", f"{common.topic_prefix}dispatcher"),
        backoff=_backoff(env),
        floors=RetryFloors(
            timeout_s=env_float(env, "POSTWIRE_RETRY_FLOOR_TIMEOUT_S", 5.0, 0.0, 86400.0),
            rate_limited_s=env_float(env, "POSTWIRE_RETRY_FLOOR_429_S", 10.0, 0.0, 86400.0),
        ),
        concurrency=env_int(env, "POSTWIRE_DISPATCHER_CONCURRENCY", 512, 1, 100000),
        endpoint_concurrency=env_int(env, "POSTWIRE_DISPATCHER_ENDPOINT_CONCURRENCY", 64, 1,
                                     100000),
        # measured: one claim loop was busy 95% of the time at ~1,300 deliveries/s;
        # 2 gave 1,914/s and 4 gave 2,198/s end to end (bench/e2e.py)
        claim_workers=env_int(env, "POSTWIRE_DISPATCHER_CLAIM_WORKERS", 4, 1, 64),
        waiting_per_endpoint=env_int(env, "POSTWIRE_DISPATCHER_WAITING_PER_ENDPOINT", 2000, 1,
                                     1000000),
        lease_margin_s=env_float(env, "POSTWIRE_LEASE_MARGIN_S", 10.0, 0.5, 3600.0),
        rate_horizon_s=env_float(env, "POSTWIRE_RATE_HORIZON_S", 1.0, 0.05, 60.0),
        scheduler_interval_s=env_float(env, "POSTWIRE_SCHEDULER_INTERVAL_S", 0.25, 0.01, 60.0),
        sweep_interval_s=env_float(env, "POSTWIRE_SWEEP_INTERVAL_S", 5.0, 0.1, 3600.0),
        sweep_stale_s=env_float(env, "POSTWIRE_SWEEP_STALE_S", 120.0, 0.5, 86400.0),
        # long enough by default for every in-flight attempt to end (its timeout bounds it),
        # so a SIGTERM never makes a merchant see a delivery twice
        drain_s=env_float(env, "POSTWIRE_DISPATCHER_DRAIN_S", common.delivery_timeout_s + 5.0,
                          0.0, 3600.0),
        kafka_session_timeout_ms=env_int(env, "POSTWIRE_KAFKA_SESSION_TIMEOUT_MS", 10000, 1000,
                                         300000),
        outcome_batch_max=env_int(env, "POSTWIRE_OUTCOME_BATCH_MAX", 500, 1, 10000),
        outcome_batch_wait_ms=env_int(env, "POSTWIRE_OUTCOME_BATCH_WAIT_MS", 5, 0, 1000),
        outcome_linger_ms=env_int(env, "POSTWIRE_OUTCOME_LINGER_MS", 50, 0, 1000),
        claim_linger_ms=env_int(env, "POSTWIRE_DISPATCHER_CLAIM_LINGER_MS", 20, 0, 1000),
    )
