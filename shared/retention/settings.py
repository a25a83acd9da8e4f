"""The retention settings, read once from the environment (see README, "Configuration")."""

from __future__ import annotations

import re
from collections.abc import Mapping

from shared.config import env_float, env_int, env_str
from shared.core.errors import ConfigError
from shared.core.retention import RetentionPolicy

MAX_DAYS = 36500
_ACCOUNT_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


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


def _account_days(env: Mapping[str, str], history_days: int) -> tuple[tuple[str, int], ...]:
    """``acct_a:7,acct_b:14``: accounts whose history is kept fewer days than the default."""
    name = "POSTWIRE_RETENTION_ACCOUNT_DAYS"
    raw = env.get(name, "").strip()
    if not raw:
        return ()
    found: dict[str, int] = {}
    for entry in raw.split(","):
        account, sep, days_text = entry.strip().partition(":")
        days = int(days_text) if days_text.strip().isdigit() else 0
        if not sep or not _ACCOUNT_RE.fullmatch(account) or account in found \
                or not 1 <= days < history_days:
            raise ConfigError(
                f"{name}={raw!r} is not valid: expected account:days pairs, each account once,"
                f" with fewer days than POSTWIRE_RETENTION_DAYS ({history_days}; longer"
                " retention for one account is not possible: days are dropped whole)")
        found[account] = days
    return tuple(sorted(found.items()))


def load_retention_policy(env: Mapping[str, str]) -> RetentionPolicy:
    """``POSTWIRE_RETENTION_DAYS`` (30), ``POSTWIRE_DEAD_LETTER_RETENTION_DAYS`` (90),
    ``POSTWIRE_AUDIT_RETENTION_DAYS`` (forever), ``POSTWIRE_PARTITION_AHEAD_DAYS`` (7),
    ``POSTWIRE_RETENTION_ACCOUNT_DAYS`` (none). Raises ConfigError naming the variable."""
    history_days = env_int(env, "POSTWIRE_RETENTION_DAYS", 30, 1, MAX_DAYS)
    return RetentionPolicy(
        history_days=history_days,
        dead_letter_days=_days_or_forever(env, "POSTWIRE_DEAD_LETTER_RETENTION_DAYS", "90"),
        audit_days=_days_or_forever(env, "POSTWIRE_AUDIT_RETENTION_DAYS", "forever"),
        ahead_days=env_int(env, "POSTWIRE_PARTITION_AHEAD_DAYS", 7, 1, 90),
        account_days=_account_days(env, history_days),
    )


def load_retention_interval_s(env: Mapping[str, str]) -> float:
    """``POSTWIRE_RETENTION_INTERVAL_S`` (600): how often a process tries a maintenance round."""
    return env_float(env, "POSTWIRE_RETENTION_INTERVAL_S", 600.0, 0.05, 86400.0)


def load_drop_pause_s(env: Mapping[str, str]) -> float:
    """``POSTWIRE_RETENTION_DROP_PAUSE_S`` (1): pause after each partition a purge drops."""
    return env_float(env, "POSTWIRE_RETENTION_DROP_PAUSE_S", 1.0, 0.0, 600.0)
