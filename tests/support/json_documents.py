"""Generated JSON documents for property tests (hypothesis): values with exact numbers
(``int`` of any size, ``Decimal`` for every other number) and the many ways a producer may
spell them (whitespace, ``\\u`` escapes, exponent forms, letter case)."""

from __future__ import annotations

import json
from collections.abc import Callable
from decimal import Decimal
from typing import Any

from hypothesis import strategies as st


def _spell_string(value: str, ascii_only: bool) -> str:
    return json.dumps(value, ensure_ascii=ascii_only)


def _spell_number(value: int | Decimal, style: int) -> str:
    if isinstance(value, int):
        return str(value)
    text = str(value)  # Decimal's own spelling: 1E+5, 0E-7, -0.0, 1.50 ...
    return text.lower() if style % 2 else text


Doc = Any  # None | bool | int | Decimal | str | list[Doc] | dict[str, Doc]

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(),
    st.integers(min_value=-(10 ** 40), max_value=10 ** 40),
    st.decimals(allow_nan=False, allow_infinity=False, places=None),
    st.floats(allow_nan=False, allow_infinity=False).map(lambda f: Decimal(repr(f))),
    st.text(max_size=12))
documents = st.recursive(
    scalars,
    lambda children: st.one_of(st.lists(children, max_size=4),
                               st.dictionaries(st.text(max_size=6), children, max_size=4)),
    max_leaves=20)


def render_document(doc: Doc, draw: Callable[[st.SearchStrategy[Any]], Any]) -> str:
    """``doc`` as a producer might spell it: random whitespace, escapes and number forms."""
    ws: str = draw(st.sampled_from(["", " ", "\n  ", "\t"]))
    if isinstance(doc, dict):
        members = [f"{_spell_string(k, draw(st.booleans()))}{ws}:{ws}"
                   f"{render_document(v, draw)}" for k, v in doc.items()]
        return "{" + ws + f",{ws}".join(members) + ws + "}"
    if isinstance(doc, list):
        return "[" + ws + f",{ws}".join(render_document(v, draw) for v in doc) + ws + "]"
    if isinstance(doc, str):
        return _spell_string(doc, draw(st.booleans()))
    if isinstance(doc, bool) or doc is None:
        return json.dumps(doc)
    return _spell_number(doc, draw(st.integers(0, 1)))


def render_compact(doc: Doc) -> bytes:
    """``doc`` without whitespace, non-ASCII characters unescaped, numbers as spelled."""
    def text(value: Doc) -> str:
        if isinstance(value, dict):
            return "{" + ",".join(f"{json.dumps(k, ensure_ascii=False)}:{text(v)}"
                                  for k, v in value.items()) + "}"
        if isinstance(value, list):
            return "[" + ",".join(map(text, value)) + "]"
        if isinstance(value, Decimal):
            return str(value)
        return json.dumps(value, ensure_ascii=False)

    return text(doc).encode()




@st.composite
def spelled_objects(draw: st.DrawFn, max_size: int = 5) -> tuple[dict[str, Doc], bytes]:
    """A JSON object and one random spelling of it."""
    doc = draw(st.dictionaries(st.text(max_size=6), documents, max_size=max_size))
    return doc, render_document(doc, draw).encode()


def exact(raw: bytes | str) -> Any:
    """Parse with exact numbers: integers as int, every other number as Decimal."""
    return json.loads(raw, parse_float=Decimal)
