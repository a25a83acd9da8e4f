"""The event models (the OpenAPI document's EventCreate and BatchItem) and the inline checks
of the ingest hot path agree: the same envelopes are accepted, and a broken one is refused
by both naming the same field (property test; one field broken at a time)."""

from __future__ import annotations

from typing import Any

import orjson
from hypothesis import example, given, settings
from hypothesis import strategies as st

from services.ingest.api_models import BatchItem, EventCreate
from services.ingest.event_validation import parse_batch, parse_event
from shared.core.errors import ApiError, InvalidRequest
from shared.http.models import convert_body

# no surrogates (not encodable), no newline (Python's `$` in msgspec's re.search allows one
# final newline, which the inline fullmatch refuses; the account id and type are also checked
# by fullmatch wherever a model is used at run time)
TEXT = st.characters(exclude_categories=["Cs"], exclude_characters="\n")
ACCOUNT = st.from_regex(r"\A[A-Za-z0-9_-]{1,64}\Z")
TYPE = st.from_regex(r"\A[A-Za-z0-9_.-]{1,128}\Z")
ORDERING = st.text(TEXT.filter(lambda c: not (c < " " or c == "\x7f")), min_size=1,
                   max_size=256)
IDEMPOTENCY = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7e), min_size=1,
                      max_size=255)
DATA = st.dictionaries(st.text(TEXT, max_size=8),
                       st.integers(-10**6, 10**6) | st.text(TEXT, max_size=8) | st.booleans(),
                       max_size=3)
INT = st.integers(-(2**63), 2**63 - 1)
ANY = (st.none() | st.booleans() | INT | st.text(TEXT, max_size=300)
       | st.lists(INT, max_size=2) | st.dictionaries(st.text(TEXT, max_size=3), INT, max_size=2))


def envelope(batch: bool) -> st.SearchStrategy[dict[str, Any]]:
    fields: dict[str, st.SearchStrategy[Any]] = {"account_id": ACCOUNT, "type": TYPE,
                                                 "data": DATA}
    optional: dict[str, st.SearchStrategy[Any]] = {"ordering_key": st.none() | ORDERING}
    if batch:
        optional["idempotency_key"] = st.none() | IDEMPOTENCY
    return st.fixed_dictionaries(fields, optional=optional)


@st.composite
def cases(draw: st.DrawFn, batch: bool) -> dict[str, Any]:
    """A valid envelope, or one with exactly one field broken, missing or unknown."""
    body = draw(envelope(batch))
    change = draw(st.sampled_from(["none", "replace", "drop", "unknown"]))
    if change == "replace":
        body[draw(st.sampled_from(sorted(body)))] = draw(ANY)
    elif change == "drop":
        del body[draw(st.sampled_from(["account_id", "type", "data"]))]
    elif change == "unknown":
        body[draw(st.text(TEXT, min_size=1, max_size=10).filter(lambda k: k not in body))] = 1
    return body


def model_param(body: dict[str, Any], model: Any, prefix: str = "") -> str | None:
    try:
        convert_body(body, model, prefix)
    except InvalidRequest as exc:
        return exc.param or ""
    return None


def inline_param(result: Any) -> str | None:
    return (result.param or "") if isinstance(result, ApiError) else None


def hot_path_event(body: dict[str, Any]) -> str | None:
    try:
        return inline_param(parse_event(orjson.dumps(body), max_data_bytes=262_144))
    except ApiError as exc:
        return exc.param or ""


@settings(max_examples=250, deadline=None)
@given(cases(batch=False))
def test_single_event_model_and_hot_path_agree(body: dict[str, Any]) -> None:
    assert model_param(body, EventCreate) == hot_path_event(body), body


@settings(max_examples=250, deadline=None)
@given(cases(batch=True))
@example({"account_id": "a", "type": "t", "data": {}, "[": 1})  # a name that looks like an index
def test_batch_item_model_and_hot_path_agree(body: dict[str, Any]) -> None:
    [item] = parse_batch(orjson.dumps({"events": [body]}), 262_144)
    assert model_param(body, BatchItem, "events[0]") == inline_param(item), body
