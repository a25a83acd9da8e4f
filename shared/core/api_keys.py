"""Ingest API keys and the accounts each one may act for.

``POSTWIRE_API_KEYS`` is a comma-separated list of entries, each either

- ``KEY``: a key for every account (an internal producer that emits for all merchants), or
- ``ACCOUNTS:KEY`` with ``ACCOUNTS`` = ``acct_1+acct_2+...`` (account ids, ``[A-Za-z0-9_-]``):
  a key limited to those accounts, or ``*`` (every account, written out).

A key that itself contains ``:`` after an account-like prefix must be written ``*:KEY``.
A key never reveals or touches another account's endpoints, secrets, events, deliveries or
attempts: a foreign object is answered 404 (as if it did not exist), a foreign ``account_id``
in a request is 403 ``forbidden``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from shared.core.errors import ConfigError

_ACCOUNTS_RE = re.compile(r"^(\*|[A-Za-z0-9_-]{1,64}(\+[A-Za-z0-9_-]{1,64})*)$")
_TOKEN_RE = re.compile(r"^[\x21-\x7e]{8,512}$")
_BAD_ENTRY = ("POSTWIRE_API_KEYS is not valid: expected comma-separated entries KEY or "
              "ACCOUNT+ACCOUNT:KEY (keys of 8..512 printable characters)")


@dataclass(frozen=True)
class ApiKey:
    """One ingest key: ``accounts`` None means every account. ``label`` (``key-1``, ...) names
    the key in logs without revealing it; the secret is left out of ``repr``."""

    label: str
    secret: str = field(repr=False)
    accounts: frozenset[str] | None

    def allows(self, account_id: str) -> bool:
        """True when this key may act for ``account_id``."""
        return self.accounts is None or account_id in self.accounts


def parse_entry(entry: str, label: str) -> ApiKey:
    """One ``POSTWIRE_API_KEYS`` entry; raises ConfigError on a malformed one."""
    scope, sep, secret = entry.partition(":")
    if not sep or not _ACCOUNTS_RE.match(scope):
        scope, secret = "*", entry
    if not _TOKEN_RE.match(secret):
        raise ConfigError(_BAD_ENTRY)
    accounts = None if scope == "*" else frozenset(scope.split("+"))
    return ApiKey(label=label, secret=secret, accounts=accounts)


def parse_api_key_entries(raw: str) -> tuple[ApiKey, ...]:
    """Every entry of ``POSTWIRE_API_KEYS`` (at least one); raises ConfigError otherwise."""
    entries = [e.strip() for e in raw.split(",") if e.strip()]
    if not entries:
        raise ConfigError(_BAD_ENTRY)
    keys = tuple(parse_entry(e, f"key-{n}") for n, e in enumerate(entries, start=1))
    if len({k.secret for k in keys}) != len(keys):
        raise ConfigError("POSTWIRE_API_KEYS is not valid: the same key appears twice")
    return keys


def scope_label(accounts: Iterable[str]) -> str:
    """``acct_1, acct_2`` (sorted) for error messages."""
    return ", ".join(sorted(accounts))
