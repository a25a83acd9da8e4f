"""``POSTWIRE_API_KEYS`` entries: plain keys reach every account, ``a+b:KEY`` only those."""

from __future__ import annotations

import pytest

from shared.config import parse_api_keys, parse_scoped_api_keys
from shared.core.api_keys import parse_api_key_entries
from shared.core.errors import ConfigError


def test_plain_and_scoped_entries() -> None:
    keys = parse_api_key_entries("plain-key-1, acct_1+acct-2:scoped-key-1, *:key:with:colons")
    assert [k.label for k in keys] == ["key-1", "key-2", "key-3"]
    plain, scoped, starred = keys
    assert plain.accounts is None and plain.allows("anyone")
    assert scoped.secret == "scoped-key-1" and scoped.accounts == frozenset({"acct_1", "acct-2"})
    assert scoped.allows("acct-2") and not scoped.allows("acct_3")
    assert starred.secret == "key:with:colons" and starred.accounts is None
    assert "scoped-key-1" not in repr(scoped)


def test_a_key_with_a_colon_but_no_account_prefix_is_a_plain_key() -> None:
    [key] = parse_api_key_entries("not.an.account:secret-key")
    assert key.secret == "not.an.account:secret-key" and key.accounts is None


def test_services_authenticate_with_the_secret_alone() -> None:
    env = {"POSTWIRE_API_KEYS": "k-plain-123,acct_1:k-scoped-123"}
    assert parse_api_keys(env) == ("k-plain-123", "k-scoped-123")
    assert [k.accounts for k in parse_scoped_api_keys(env)] == [None, frozenset({"acct_1"})]


@pytest.mark.parametrize("raw", ["", " , ", "acct_1:short", "acct_1:", "dup-key-1,dup-key-1",
                                 "acct_1:same-key-1,acct_2:same-key-1"])
def test_bad_entries_name_the_variable(raw: str) -> None:
    with pytest.raises(ConfigError, match=r"^POSTWIRE_API_KEYS"):
        parse_scoped_api_keys({"POSTWIRE_API_KEYS": raw})
