"""The stored webhook body of an event, and ``data`` read back out of it. Pure.

The body is rendered once at ingest and stored as bytes (``events.body``); every attempt and
replay sends exactly those bytes. ``data`` inside it is the producer's own JSON text, byte for
byte (whitespace, number spellings, escapes), never re-rendered. Reads take ``data`` back out
by position (:func:`stored_data`) and embed it unparsed (:func:`data_fragment`,
:class:`JsonText`), so what an API read shows is exactly what a merchant received, and no
stored document (however deep, however large its numbers) can make a read fail.
"""

from __future__ import annotations

from typing import Any

import orjson

_DATA_MEMBER = b'"data":'


def render_body(event_id: str, event_type: str, timestamp: str, account_id: str,
                data_json: bytes) -> bytes:
    """``{"id","type","timestamp","account_id","data"}``: compact JSON around ``data_json``.

    Every string but ``data`` is restricted to characters JSON never escapes (ids, the type
    and account id patterns, RFC 3339 timestamps), so the head is plain text.
    """
    head = (f'{{"id":"{event_id}","type":"{event_type}","timestamp":"{timestamp}",'
            f'"account_id":"{account_id}","data":')
    return head.encode() + data_json + b"}"


def stored_data(body: bytes) -> bytes:
    """The ``data`` JSON text inside a body made by :func:`render_body` (and by every earlier
    version: the head's fields never contain ``"data":``). Raises ValueError on other bytes."""
    return body[body.index(_DATA_MEMBER) + len(_DATA_MEMBER):-1]


def data_fragment(body: bytes) -> orjson.Fragment:
    """``data`` of a stored body, for embedding as is in an orjson-rendered response; ``null``
    for bytes that are not a body of ours (a read never fails because of one row)."""
    try:
        return orjson.Fragment(stored_data(body))
    except ValueError:
        return orjson.Fragment(b"null")


class JsonText:
    """JSON source text kept as is: rendered into a response by :func:`embed_json_text`,
    shown to a person as :attr:`text`. (Not a dataclass: orjson would render one itself.)"""

    __slots__ = ("source",)

    def __init__(self, source: bytes) -> None:
        self.source = source

    def __eq__(self, other: object) -> bool:
        return isinstance(other, JsonText) and other.source == self.source

    def __hash__(self) -> int:
        return hash(self.source)

    def __repr__(self) -> str:
        return f"JsonText({self.source!r})"

    @property
    def text(self) -> str:
        """The source as text (it is UTF-8 JSON)."""
        return self.source.decode("utf-8", "replace")


def stored_data_text(body: bytes) -> JsonText | None:
    """``data`` of a stored body as :class:`JsonText`; None if the body is not one of ours."""
    try:
        return JsonText(stored_data(body))
    except ValueError:
        return None


def embed_json_text(value: Any) -> orjson.Fragment:
    """``default`` hook for ``orjson.dumps``: embeds a :class:`JsonText` unparsed; any other
    unknown type raises TypeError, as orjson expects."""
    if isinstance(value, JsonText):
        return orjson.Fragment(value.source)
    raise TypeError(f"{type(value).__name__} is not JSON serializable")
