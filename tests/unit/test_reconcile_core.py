"""The pure parts of reconciliation, the ledger and feed tokens (shared.core)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shared.core.errors import InvalidRequest
from shared.core.feed_token import FEED_TOKEN_PREFIX, feed_token, verify_feed_token
from shared.core.ids import new_id
from shared.core.ledger import ID_TIME_MARGIN, Ledger, id_bounds, id_time_prefix
from shared.core.reconcile import (
    MAX_LINE_BYTES,
    IdParser,
    LineSplitter,
    copy_text_field,
    normalise_id,
)
from shared.core.signing import generate_secret, parse_secret


@pytest.mark.parametrize(("raw", "id_type", "expected"), [
    ("  order-42\t", "idempotency_key", "order-42"),
    ("Order-42", "idempotency_key", "Order-42"),        # keys keep their case
    ("\r\nk\n", "idempotency_key", "k"),
    ("a b", "idempotency_key", "a b"),                  # inner spaces are part of the key
    ("EVT_01J0ABCDEFGHJKMNPQRSTVWXYZ", "event_id", "evt_01J0ABCDEFGHJKMNPQRSTVWXYZ"),
    (" evt_01j0abcdefghjkmnpqrstvwxyz ", "event_id", "evt_01J0ABCDEFGHJKMNPQRSTVWXYZ"),
    ("not-an-id", "event_id", "NOT-AN-ID"),             # kept: it will simply never match
    ("   ", "idempotency_key", ""),
])
def test_normalisation_rule(raw: str, id_type: str, expected: str) -> None:
    assert normalise_id(raw, id_type) == expected  # type: ignore[arg-type]


@given(st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), min_size=1))
def test_event_id_normalisation_ignores_case_and_padding(body: str) -> None:
    value = f"evt_{body}"
    assert normalise_id(f" {value.upper()}\t", "event_id") == normalise_id(
        value.lower(), "event_id")


def test_copy_text_escapes_specials_and_refuses_nul() -> None:
    assert copy_text_field("plain") == "plain"
    assert copy_text_field("a\\b\tc\nd\re") == "a\\\\b\\tc\\nd\\re"
    with pytest.raises(InvalidRequest):
        copy_text_field("a\x00b")


def test_line_splitter_holds_back_partial_lines_only() -> None:
    splitter = LineSplitter()
    assert splitter.feed(b"a\nb") == [b"a"]
    assert splitter.feed(b"c\r\nd\n") == [b"bc\r", b"d"]
    assert splitter.feed(b"tail") == []
    assert splitter.finish() == [b"tail"]
    with pytest.raises(InvalidRequest):
        LineSplitter().feed(b"x" * (MAX_LINE_BYTES + 1))


def test_ndjson_lines() -> None:
    parser = IdParser("ndjson")
    assert list(parser.ids([b'"a"', b"", b'{"id": "b", "amount": 3}', b' "c" \r'])) == [
        "a", "b", "c"]
    for bad in (b"{", b"[1]", b"3", b'{"id": 4}', b'{"key": "a"}'):
        with pytest.raises(InvalidRequest) as info:
            list(IdParser("ndjson").ids([b'"ok"', bad]))
        assert info.value.param == "body" and "line 2" in str(info.value)


def test_csv_lines() -> None:
    parser = IdParser("csv")
    lines = [b"Idempotency_Key,amount", b"k1,3", b'"k,2",4', b'" k3 "', b"", b"k4\r"]
    assert list(parser.ids(lines)) == ["k1", "k,2", " k3 ", "k4\r"]
    assert list(IdParser("csv").ids([b"k0,1", b"id"])) == ["k0", "id"]  # header on line 1 only
    with pytest.raises(InvalidRequest):
        list(IdParser("csv").ids([b'"unterminated']))
    with pytest.raises(InvalidRequest):
        list(IdParser("csv").ids([b"\xff\xfe"]))


def test_id_time_prefix_is_the_time_part_of_real_ids() -> None:
    before = datetime.now(UTC)
    made = new_id("dlv")
    after = datetime.now(UTC)
    assert id_time_prefix(before - timedelta(milliseconds=1)) <= made[4:14]
    assert made[4:14] <= id_time_prefix(after + timedelta(milliseconds=1))


def test_id_bounds_widen_the_window_by_the_margin() -> None:
    since = datetime(2026, 1, 1, tzinfo=UTC)
    until = since + timedelta(hours=1)
    low, high = id_bounds("evt", since, until)
    assert low == f"evt_{id_time_prefix(since - ID_TIME_MARGIN)}"
    assert high == f"evt_{id_time_prefix(until + ID_TIME_MARGIN)}"
    assert id_bounds("evt", None, None) == (None, None)


def _ledger(created: int, dead_unrecorded: int = 0, **by_status: int) -> Ledger:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    return Ledger(since=None, until=None, as_of=now, events_accepted=1,
                  deliveries_created=created, by_status=by_status,
                  dead_without_dead_letter=dead_unrecorded)


def test_ledger_balances_only_when_every_delivery_is_accounted_for() -> None:
    ok = _ledger(6, succeeded=2, dead=1, cancelled=1, pending=1, retrying=1)
    assert ok.balanced and ok.open == 2 and ok.accounted == 6
    assert ok.to_json()["deliveries_by_status"] == {
        "pending": 1, "retrying": 1, "succeeded": 2, "dead": 1, "cancelled": 1, "open": 2}
    missing = _ledger(7, succeeded=2, dead=1, cancelled=1, pending=1, retrying=1)
    assert not missing.balanced
    assert [c.holds for c in missing.checks] == [False, True]
    assert not _ledger(1, dead_unrecorded=1, dead=1).balanced


def test_feed_tokens_are_per_endpoint_and_per_secret() -> None:
    secret, other = generate_secret(), generate_secret()
    token = feed_token("ep_A", secret)
    assert token.startswith(FEED_TOKEN_PREFIX) and token == feed_token("ep_A", secret)
    assert token != feed_token("ep_B", secret) and token != feed_token("ep_A", other)
    assert verify_feed_token(token, "ep_A", [parse_secret(other), parse_secret(secret)])
    assert not verify_feed_token(token, "ep_B", [parse_secret(secret)])
    assert not verify_feed_token(token, "ep_A", [parse_secret(other)])
    assert not verify_feed_token("pwfeed_\udcff", "ep_A", [parse_secret(secret)])
    with pytest.raises(ValueError):
        feed_token("ep_A", "not-a-secret")
