"""The retention settings, read once from the environment (see README, "Configuration")."""

from __future__ import annotations

from collections.abc import Mapping

from shared.config import env_float, env_int, env_str
from shared.core.errors import ConfigError
from shared.core.retention import RetentionPolicy

MAX_DAYS = 36500


def _days_or_forever(env: Mapping[str, str], name: str, default: str) -> int | None:
    """A number of days (1..36500) or ``forever`` (None)."""
    raw = env_str(env, name, default)
    if raw.lower() == "forever":
        return None
    try:
        days = int(raw)
    except ValueError:
        days = 0
    if not 1 <= days <= MAX_DAYS:
        raise ConfigError(f"{name}={raw!r} is not valid: expected a number of days from 1 to "
                          f"{MAX_DAYS}, or forever")
    return days


def load_retention_policy(env: Mapping[str, str]) -> RetentionPolicy:
    """``POSTWIRE_RETENTION_DAYS`` (30), ``POSTWIRE_DEAD_LETTER_RETENTION_DAYS`` (90),
    ``POSTWIRE_AUDIT_RETENTION_DAYS`` (forever), ``POSTWIRE_PARTITION_AHEAD_DAYS`` (7).
    Raises ConfigError naming the variable."""
    return RetentionPolicy(
        history_days=env_int(env, "POSTWIRE_RETENTION_DAYS", 30, 1, MAX_DAYS),
        dead_letter_days=_days_or_forever(env, "POSTWIRE_DEAD_LETTER_RETENTION_DAYS", "90"),
        audit_days=_days_or_forever(env, "POSTWIRE_AUDIT_RETENTION_DAYS", "forever"),
        ahead_days=env_int(env, "POSTWIRE_PARTITION_AHEAD_DAYS", 7, 1, 90),
    )


def load_retention_interval_s(env: Mapping[str, str]) -> float:
    """``POSTWIRE_RETENTION_INTERVAL_S`` (600): how often a process tries a maintenance round."""
    return env_float(env, "POSTWIRE_RETENTION_INTERVAL_S", 600.0, 0.05, 86400.0)


def load_drop_pause_s(env: Mapping[str, str]) -> float:
    """``POSTWIRE_RETENTION_DROP_PAUSE_S`` (1): pause after each partition a purge drops."""
    return env_float(env, "POSTWIRE_RETENTION_DROP_PAUSE_S", 1.0, 0.0, 600.0)
