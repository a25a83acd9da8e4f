"""Exact payloads at the unit level: ``data`` is kept as the producer's bytes, read without
rounding, refused (400 naming the field) when it cannot be delivered as sent; the JSON text
reader's depth, skipping and syntax rules; properties over generated documents (hypothesis).
"""

from __future__ import annotations

import json

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.ingest.event_validation import (
    MAX_DATA_DEPTH,
    EventInput,
    parse_batch,
    parse_event,
    webhook_body,
)
from shared.core.errors import ApiError, InvalidRequest
from shared.core.event_body import (
    JsonText,
    data_fragment,
    embed_json_text,
    render_body,
    stored_data,
    stored_data_text,
)
from shared.core.json_text import JsonCursor, JsonSyntaxError, nesting_depth, skip_value
from shared.http.body import parse_json_object
from tests.support.json_documents import Doc, documents, exact, render_compact, render_document

LIMIT = 1 << 20
HEAD = b'{"account_id":"acct_1","type":"invoice.paid","data":'


def _body(data: bytes, head: bytes = HEAD) -> bytes:
    return head + data + b"}"


def _refusal(raw: bytes) -> ApiError:
    with pytest.raises(ApiError) as info:
        parse_event(raw, max_data_bytes=LIMIT)
    return info.value


# ----------------------------------------------------------------------------- fixed cases

@pytest.mark.parametrize("data", [
    b'{"n": 123456789012345678901234567890}',
    b'{"n":-123456789012345678901234567890,"m":18446744073709551616}',
    b'{"z":-0.0,"zi":-0,"e":1E5,"e2":1e-7,"e3":2.5E+300,"big":1e400,"tiny":5e-400}',
    b'{"f":0.10000000000000000001,"g":3.141592653589793238462643383279}',
    b'{"u":"\\u00e9\\u00E9\\ud83d\\ude00","raw":"\xc3\xa9\xf0\x9f\x98\x80","sl":"a\\/b"}',
    b'{"nul":"\\u0000","k\\u0000":1,"ctl":"\\u001f\\n\\t"}',
    b'{ "spaced" : [ 1 , 2 ] ,\n\t"next" :\r\n {} }',
    b'{"\\\\ud800":"a backslash, then the letters ud800: no surrogate"}',
])
def test_data_is_kept_byte_for_byte_and_reads_back_to_the_same_value(data: bytes) -> None:
    event = parse_event(_body(data), max_data_bytes=LIMIT)
    assert event.data_json == data
    body = webhook_body("evt_X", "2026-12-04T10:00:00.000Z", event)
    assert stored_data(body) == data
    assert exact(body)["data"] == exact(data)


def test_big_integer_from_the_issue_is_not_rounded() -> None:
    event = parse_event(_body(b'{"n": 123456789012345678901234567890}'), max_data_bytes=LIMIT)
    delivered = json.loads(webhook_body("evt_X", "t", event))
    assert delivered["data"]["n"] == 123456789012345678901234567890
    assert b"e+29" not in event.data_json


@pytest.mark.parametrize("data", [
    b'{"s":"\\ud800"}', b'{"s":"\\udfff"}', b'{"s":"x\\uDBFFy"}', b'{"s":"\\ude00\\ud83d"}',
    b'{"s":"\\ud83d"}', b'{"\\ud800":1}', b'{"a":[{"b":"\\ud800\\u0041"}]}',
])
def test_a_lone_surrogate_is_400_naming_data(data: bytes) -> None:
    error = _refusal(_body(data))
    assert isinstance(error, InvalidRequest) and error.param == "data"
    assert "surrogate" in error.message


@pytest.mark.parametrize("data", [b'{"a":1,"a":1}', b'{"x":[{"b":1,"c":2,"b":3}]}'])
def test_a_member_named_twice_in_data_is_400(data: bytes) -> None:
    error = _refusal(_body(data))
    assert error.param == "data" and "twice" in error.message


@pytest.mark.parametrize("raw", [
    _body(b'{"n":NaN}'), _body(b'{"n":Infinity}'), _body(b'{"n":-Infinity}'),
    _body(b'{"s":"a\x00b"}'), _body(b'{"s":"a\nb"}'), _body(b'{"s":"\xff"}'),
    _body(b'{"s":"\xed\xa0\x80"}'), _body(b'{"n":01}'), _body(b'{"n":1.}'),
    _body(b'{"s":"\\x"}'), _body(b'{"a":1,}'), _body(b'{"a":1}') + b"x",
])
def test_text_that_is_not_json_is_400_for_the_whole_body(raw: bytes) -> None:
    error = _refusal(raw)
    assert isinstance(error, InvalidRequest) and error.param is None


def test_an_integer_of_4300_digits_is_kept_and_a_longer_one_is_400() -> None:
    longest = b'{"n":' + b"9" * 4300 + b"}"
    assert parse_event(_body(longest), max_data_bytes=LIMIT).data_json == longest
    error = _refusal(_body(b'{"n":' + b"9" * 4301 + b"}"))
    assert error.param is None and "more than 4300 digits" in error.message


def _nested(depth: int) -> bytes:
    """``data`` nested ``depth`` levels: objects and arrays alternating, ``{"a":[{"a":...}]}``."""
    opens = "".join('{"a":' if n % 2 == 0 else "[" for n in range(depth))
    closes = "".join("}" if n % 2 == 0 else "]" for n in reversed(range(depth)))
    return (opens + "1" + closes).encode()


@pytest.mark.parametrize("depth", [1, 2, MAX_DATA_DEPTH])
def test_data_up_to_the_depth_limit_is_accepted(depth: int) -> None:
    data = _nested(depth)
    assert nesting_depth(data) == depth
    assert parse_event(_body(data), max_data_bytes=LIMIT).data_json == data


@pytest.mark.parametrize("depth", [MAX_DATA_DEPTH + 1, 252, 253, 254, 255, 1023, 1024, 1025,
                                   5000, 100_000])
def test_data_deeper_than_the_limit_is_400_naming_data(depth: int) -> None:
    error = _refusal(_body(_nested(depth)))
    assert isinstance(error, InvalidRequest) and error.param == "data"
    assert str(MAX_DATA_DEPTH) in error.message


@pytest.mark.parametrize("depth", [MAX_DATA_DEPTH + 1, 254, 255, 1024, 100_000])
def test_a_deep_item_fails_alone_in_a_batch(depth: int) -> None:
    good = _body(b'{"ok":1}', b'{"account_id":"a","type":"t","data":')
    deep = _body(_nested(depth), b'{"account_id":"a","type":"t","data":')
    surrogate = _body(b'{"s":"\\ud800"}', b'{"account_id":"a","type":"t","data":')
    raw = b'{"events":[' + b",".join([good, deep, good, surrogate]) + b"]}"
    items = parse_batch(raw, LIMIT)
    assert [type(i).__name__ for i in items] == [
        "EventInput", "InvalidRequest", "EventInput", "InvalidRequest"]
    assert [getattr(i, "param", None) for i in items[1::2]] == ["events[1].data",
                                                                 "events[3].data"]


def test_deep_values_outside_data_cannot_break_the_reader() -> None:
    deep = b"[" * 50_000 + b"]" * 50_000
    error = _refusal(b'{"account_id":"a","type":"t","data":{},"x":' + deep + b"}")
    assert error.param == "x"
    items = parse_batch(b'{"events":[' + deep + b',{"account_id":"a","type":"t","data":{}}]}',
                        LIMIT)
    assert isinstance(items[0], InvalidRequest) and items[0].param == "events[0]"
    assert isinstance(items[1], EventInput)


def test_an_escaped_nul_is_delivered_as_sent() -> None:
    event = parse_event(_body(b'{"s":"a\\u0000b"}'), max_data_bytes=LIMIT)
    assert event.data_json == b'{"s":"a\\u0000b"}'
    assert json.loads(event.data_json)["s"] == "a\x00b"


def test_an_ordering_key_with_a_lone_surrogate_is_400() -> None:
    error = _refusal(b'{"account_id":"a","type":"t","data":{},"ordering_key":"\\ud800"}')
    assert error.param == "ordering_key" and "surrogate" in error.message


@pytest.mark.parametrize(("data", "where"), [
    (b'{"a":[1,{"b":"x\\ud800"}]}', 'at ["a"][1]["b"]'),
    (b'{"\\udc00":1}', 'at ["\\udc00"] (the name)'),
])
def test_the_refusal_says_where_the_lone_surrogate_is(data: bytes, where: str) -> None:
    assert _refusal(_body(data)).message.endswith(where)


def test_a_duplicated_envelope_member_takes_the_last_value_like_every_parser() -> None:
    event = parse_event(b'{"account_id":"a","type":"t","data":{"v":1},"data":{"v":2}}',
                        max_data_bytes=LIMIT)
    assert event.data_json == b'{"v":2}'


# ------------------------------------------------------------------------- the text reader

def test_skip_value_matches_brackets_and_strings_at_any_depth() -> None:
    text = '[{"a":"]}\\"["},[[[]]]]' + " tail"
    assert skip_value(text, 0) == len(text) - len(" tail")
    deep = "[" * 100_000 + "]" * 100_000
    assert skip_value(deep + ",1", 0) == len(deep)
    with pytest.raises(JsonSyntaxError):
        skip_value("[[]", 0)


def test_nesting_depth_ignores_brackets_in_strings() -> None:
    assert nesting_depth(b'{"a":"[[[{{{","b":["]"]}') == 2
    assert nesting_depth(b'"["') == 0 and nesting_depth(b"1") == 0
    assert nesting_depth(b"{}") == 1 and nesting_depth(b"[[]]") == 2


@pytest.mark.parametrize("text", ["", "{", '{"a"}', '{"a":}', "[1 2]", '{"a":1 "b":2}', "nul"])
def test_the_cursor_raises_on_text_that_is_not_json(text: str) -> None:
    with pytest.raises(JsonSyntaxError):
        cursor = JsonCursor(text)
        for _ in cursor.members():
            cursor.value()
        cursor.finish()


# -------------------------------------------------------------------------------- properties

@settings(max_examples=150, deadline=None)
@given(st.dictionaries(st.text(max_size=6), documents, max_size=5), st.data())
def test_any_document_is_kept_exactly_and_reads_back_to_its_value(data: dict[str, Doc],
                                                                   rnd: st.DataObject) -> None:
    text = render_document(data, rnd.draw).encode()
    spacing = rnd.draw(st.sampled_from([b"", b" ", b"\n"]))
    raw = (b'{"account_id":"acct_1",' + spacing + b'"type":"invoice.paid","data":' + spacing
           + text + spacing + b"}")
    event = parse_event(raw, max_data_bytes=LIMIT, idempotency_key="k")
    assert event.data_json == text
    body = webhook_body("evt_X", "2026-12-04T10:00:00.000Z", event)
    assert stored_data(body) == text
    assert exact(body)["data"] == data  # exact integers; Decimal compares by value
    # the same value spelled compactly is the same request; a changed integer is not
    compact = parse_event(_body(render_compact(data)), max_data_bytes=LIMIT,
                          idempotency_key="k")
    assert compact.request_hash == event.request_hash
    changed = parse_event(_body(render_compact({**data, "__n": 10 ** 30 + 1})),
                          max_data_bytes=LIMIT, idempotency_key="k")
    other = parse_event(_body(render_compact({**data, "__n": 10 ** 30})),
                        max_data_bytes=LIMIT, idempotency_key="k")
    assert changed.request_hash != other.request_hash


@settings(max_examples=60, deadline=None)
@given(st.lists(st.dictionaries(st.text(max_size=4), documents, max_size=3), min_size=1,
                max_size=6), st.data())
def test_a_batch_reads_each_item_as_a_single_post_would(datas: list[dict[str, Doc]],
                                                       rnd: st.DataObject) -> None:
    texts = [render_document(d, rnd.draw).encode() for d in datas]
    items = parse_batch(b'{"events": [' + b", ".join(_body(t) for t in texts) + b"]}", LIMIT)
    assert [i.data_json for i in items if isinstance(i, EventInput)] == texts


@settings(max_examples=150, deadline=None)
@given(documents)
def test_depth_and_skip_agree_with_a_reference(doc: Doc) -> None:
    def depth(value: Doc) -> int:
        if isinstance(value, dict):
            return 1 + max(map(depth, value.values()), default=0)
        if isinstance(value, list):
            return 1 + max(map(depth, value), default=0)
        return 0

    text = render_compact(doc).decode()
    assert nesting_depth(text.encode()) == depth(doc)
    if text[:1] in "[{\"":
        assert skip_value(text + ",0", 0) == len(text)


def test_compact_and_general_readers_agree_on_orjson_bodies() -> None:
    """The fast path (body byte-identical to orjson's rendering) and the general reader give
    the same event."""
    obj = {"account_id": "a", "type": "t", "data": {"x": [1, 2.5, "\u00e9", None]},
           "ordering_key": "k"}
    fast = parse_event(orjson.dumps(obj), max_data_bytes=LIMIT, idempotency_key="i")
    slow = parse_event(orjson.dumps(obj).replace(b'"type":', b'"type" : '),
                       max_data_bytes=LIMIT, idempotency_key="i")
    assert fast == slow
    padded = parse_event(b"\n " + orjson.dumps(obj) + b"\r\n", max_data_bytes=LIMIT,
                         idempotency_key="i")
    assert padded == fast


def test_reads_embed_stored_data_unparsed_and_never_fail() -> None:
    deep = b"[" * 5000 + b"]" * 5000
    body = render_body("evt_X", "a.b", "2026-12-04T10:00:00.000Z", "acct_1", b'{"d":' + deep + b"}")
    assert stored_data(body) == b'{"d":' + deep + b"}"
    shown = orjson.dumps({"id": "evt_X", "data": data_fragment(body)})
    assert shown == b'{"id":"evt_X","data":{"d":' + deep + b"}}"
    text = stored_data_text(body)
    assert isinstance(text, JsonText) and text.text.startswith('{"d":[[[')
    assert orjson.dumps({"data": text}, default=embed_json_text) == b'{"data":{"d":' + deep + b"}}"
    assert orjson.dumps({"data": data_fragment(b"not a body")}) == b'{"data":null}'
    assert stored_data_text(b"not a body") is None


@settings(max_examples=80, deadline=None)
@given(st.dictionaries(st.text(max_size=6), documents, max_size=4),
       st.sampled_from(["\\ud800", "\\udbff", "\\udc00", "\\udfff", "\\ude00\\ud83d"]),
       st.booleans(), st.data())
def test_a_lone_surrogate_or_a_repeated_name_anywhere_in_data_is_refused(
        data: dict[str, Doc], escape: str, in_a_batch: bool, rnd: st.DataObject) -> None:
    """Planted at a random place of a generated document: always 400 naming data."""
    text = render_document(data, rnd.draw)
    planted = rnd.draw(st.sampled_from([
        '{"s":"' + escape + '","rest":' + text + "}",
        '{"rest":' + text + ',"nested":[{"k":"x' + escape + 'y"}]}',
        '{"a":' + text + ',"b":1,"a":2}',
        '{"rest":[' + text + ',{"dup":1,"dup":1}]}',
    ])).encode()
    if in_a_batch:
        items = parse_batch(b'{"events":[' + _body(b'{"ok":true}') + b"," + _body(planted)
                            + b"]}", LIMIT)
        assert isinstance(items[0], EventInput)
        assert isinstance(items[1], InvalidRequest) and items[1].param == "events[1].data"
    else:
        error = _refusal(_body(planted))
        assert isinstance(error, InvalidRequest) and error.param == "data"


_FRAGMENTS = st.sampled_from([
    "{", "}", "[", "]", ",", ":", " ", "\n", '"', "\\", '"data"', '"events"', '"account_id"',
    '"a"', '"t"', "1", "-0", "1e400", "0.1", "NaN", "null", "true", "\\u", "d800", "\\ud800",
    "\\u0000", "\x00", "\xe9", "\U0001F600", '"type"', '"ordering_key"', '"idempotency_key"',
    "9" * 30])


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.binary(max_size=200),
                 st.lists(_FRAGMENTS, max_size=40).map(lambda parts: "".join(parts).encode())))
def test_any_body_is_an_event_or_a_contract_error_never_a_crash(raw: bytes) -> None:
    """Fuzz: whatever the bytes, reading answers an event or an ApiError (never another
    exception, which the service would answer 503)."""
    for read in (lambda: parse_event(raw, max_data_bytes=LIMIT),
                 lambda: parse_event(b'{"account_id":"a","type":"t","data":' + raw + b"}",
                                     max_data_bytes=LIMIT),
                 lambda: parse_batch(raw, LIMIT),
                 lambda: parse_batch(b'{"events":[' + raw + b"]}", LIMIT)):
        try:
            read()
        except ApiError as exc:
            orjson.dumps(exc.body())  # the error renders


@pytest.mark.parametrize(("raw", "param"), [
    (b'{"reason":"a\\u0000"}', "reason"), (b'{"filter":{"type":"\\u0000"}}', "filter.type"),
    (b'{"ids":["x","\\u0000"]}', "ids[1]"), (b'{"m":{"k\\u0000":"v"}}', "m"),
    (b'{"k\\u0000":1}', None)])
def test_other_api_bodies_refuse_nul_naming_the_field(raw: bytes, param: str | None) -> None:
    """Endpoint and admin bodies are stored in text and jsonb columns, which cannot hold NUL;
    only event data (stored as bytes) keeps it."""
    with pytest.raises(InvalidRequest) as info:
        parse_json_object(raw)
    assert info.value.param == param and "NUL" in info.value.message
    assert parse_json_object(b'{"ok":"\\\\u0000"}') == {"ok": "\\u0000"}  # an escaped backslash
