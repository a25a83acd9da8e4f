"""Reading JSON source text exactly: each value with the span of text it came from. Pure.

Why: an event's ``data`` is delivered as the producer's own bytes (never re-rendered), so
ingest must know where ``data`` starts and ends in the request body, and must check it
without changing it. :class:`JsonCursor` walks a text left to right; the caller steps through
objects (:meth:`JsonCursor.members`) and arrays (:meth:`JsonCursor.elements`) it cares about
and reads every other value whole with :meth:`JsonCursor.value`, which parses it with the
standard library's C scanner and returns a :class:`Scanned`: the value, its character span,
and the ``problem`` that makes it unusable, if any.

Values are exact:

- integers of any size are Python ``int``;
- a number with a fraction or an exponent is a ``float`` when the float has the literal's
  exact decimal value in its shortest form (``0.1``, ``-0.0``, ``1e5``), otherwise a
  ``Decimal`` of the literal (``0.10000000000000000001``, ``1e400``, ``5e-400``), so no
  number is silently rounded;
- ``NaN``, ``Infinity`` and ``-Infinity`` are not JSON (a syntax error), nor (here) is an
  integer of more than 4,300 digits (Python's limit on converting digits to ``int``).

Problems (the text is valid RFC 8259 JSON, but the value must not be accepted as it is):

- an object that names a member twice (``{"a": 1, "a": 2}``: receivers disagree on which
  one wins);
- a string holding a lone UTF-16 surrogate escape (``"\\ud800"``: not a Unicode character;
  many receivers refuse or replace it);
- nesting too deep for the scanner (about 990 levels); :func:`nesting_depth` measures depth
  below that, for limits of the caller's choosing.

:class:`JsonSyntaxError` is raised for text that is not JSON; its ``pos`` is a character
offset.
"""

from __future__ import annotations

import json
import json.scanner
import re
import sys
from collections.abc import Callable, Iterator
from decimal import Decimal
from itertools import accumulate
from typing import Any, NamedTuple

_WS = re.compile(r"[ \t\n\r]*")
_NAME = re.compile(r'"([^"\\\x00-\x1f]*(?:\\.[^"\\\x00-\x1f]*)*)"[ \t\n\r]*:[ \t\n\r]*')
_TOKEN = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"|[\[{]+|[\]}]+')
_SURROGATE_HINT = re.compile(r"\\u[dD][89a-fA-F]")
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")
_DELTA = tuple(1 if b in b"[{" else -1 if b in b"]}" else 0 for b in range(256))
TOO_DEEP = "is nested too deeply to read"


class JsonSyntaxError(ValueError):
    """The text is not JSON. ``pos``: character offset of the error."""

    def __init__(self, message: str, pos: int) -> None:
        super().__init__(f"{message} (at character {pos})")
        self.reason = message
        self.pos = pos


class Scanned(NamedTuple):
    """One value read from the text: ``text[start:end]`` is its source.

    ``problem`` says why the value must not be used as it is (see the module docstring); then
    ``value`` is None. (A NamedTuple: one is made per member read.)
    """

    value: Any
    start: int
    end: int
    problem: str | None = None


def exact_float(literal: str) -> float | Decimal:
    """The value of a JSON number literal with a fraction or exponent, never rounded: a float
    when its shortest form has the literal's decimal value, else the literal as a Decimal."""
    number = float(literal)
    if len(literal) <= 16 and "e" not in literal and "E" not in literal:
        return number  # at most 15 significant digits in the normal range: always exact
    if number in (float("inf"), float("-inf")) or Decimal(repr(number)) != Decimal(literal):
        return Decimal(literal)
    return number


def _not_a_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON value")


class _Reader:
    """The C scanner, with object hooks that note duplicate names instead of raising (so the
    scan always finds the value's end). One per process; not thread-safe (the services read
    bodies on their event loop's thread only)."""

    def __init__(self) -> None:
        self.duplicates: list[str] = []
        decoder = json.JSONDecoder(parse_float=exact_float, parse_constant=_not_a_constant,
                                   object_pairs_hook=self._object, strict=True)
        make_scanner: Any = json.scanner.make_scanner  # typeshed types it as a class of itself
        self.scan: Callable[[str, int], tuple[Any, int]] = make_scanner(decoder)

    def _object(self, pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        obj = dict(pairs)
        if len(obj) != len(pairs):
            seen: set[str] = set()
            for name, _ in pairs:
                if name in seen:
                    self.duplicates.append(name)
                    break
                seen.add(name)
        return obj


_READER = _Reader()


def _has_surrogate(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def lone_surrogate_at(value: Any) -> str | None:
    """Where a string (or a member name) in ``value`` holds a lone surrogate, as a path such
    as ``["a"][0]`` (``""`` for ``value`` itself); None when none does."""
    stack: list[tuple[Any, str]] = [(value, "")]
    while stack:
        item, path = stack.pop()
        if isinstance(item, str):
            if _has_surrogate(item):
                return path
        elif isinstance(item, dict):
            for name, child in item.items():
                shown = json.dumps(name)  # ASCII, escapes included
                if _has_surrogate(name):
                    return f"{path}[{shown}] (the name)"
                stack.append((child, f"{path}[{shown}]"))
        elif isinstance(item, list):
            stack.extend((child, f"{path}[{index}]") for index, child in enumerate(item))
    return None


def nesting_depth(source: bytes) -> int:
    """How deep arrays and objects nest in the JSON text ``source``: 0 for a scalar, 1 for
    ``{}`` or ``[1]``, 2 for ``{"a": []}``. Linear in the text, at C speed."""
    if source.count(b"[") + source.count(b"{") <= 1:
        return 1 if source[:1] in (b"[", b"{") else 0
    # Drop escaped backslashes, then escaped quotes: the quotes left delimit the strings, and
    # every other piece of the split lies outside them (bytes methods only: no regex).
    unescaped = source.replace(b"\\\\", b"").replace(b'\\"', b"")
    outside = b"".join(unescaped.split(b'"')[::2])
    brackets = outside.translate(None, _NOT_BRACKETS)
    return max(accumulate(map(_DELTA.__getitem__, brackets)), default=0)


def skip_value(text: str, pos: int) -> int:
    """The end of the array, object or string starting at ``pos``, by matching brackets and
    strings only (no recursion, so any depth). Raises JsonSyntaxError if it never closes."""
    depth = 0
    for match in _TOKEN.finditer(text, pos):
        token = match.group()
        if token[0] in "[{":
            depth += len(token)
        elif token[0] != '"':
            if len(token) >= depth:
                return match.start() + depth
            depth -= len(token)
        if depth == 0:
            return match.end()
    raise JsonSyntaxError("unterminated value", pos)


def _decode_name(raw: str, pos: int) -> str:
    try:
        name: str = json.loads(f'"{raw}"')
    except json.JSONDecodeError as exc:
        raise JsonSyntaxError(exc.msg, pos + exc.pos) from None
    return name


class JsonCursor:
    """Walks one JSON text from the start. Every method raises JsonSyntaxError on text that is
    not JSON; :attr:`pos` is the current character offset."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = _WS.match(text).end()  # type: ignore[union-attr]

    def peek(self) -> str:
        """The next character ('' at the end)."""
        return self.text[self.pos:self.pos + 1]

    def value(self) -> Scanned:
        """Read the value at the cursor whole and move past it."""
        text, start = self.text, self.pos
        duplicates = _READER.duplicates
        duplicates.clear()
        try:
            value, end = _READER.scan(text, start)
        except StopIteration as exc:
            raise JsonSyntaxError("expected a JSON value", exc.value) from None
        except json.JSONDecodeError as exc:
            raise JsonSyntaxError(exc.msg, exc.pos) from None
        except ValueError as exc:  # NaN / Infinity, or an integer past Python's digit limit
            reason = (f"an integer has more than {sys.get_int_max_str_digits()} digits"
                      if "digits" in str(exc) else str(exc))
            raise JsonSyntaxError(reason, start) from None
        except RecursionError:
            self.pos = skip_value(text, start)
            return Scanned(None, start, self.pos, TOO_DEEP)
        self.pos = _WS.match(text, end).end()  # type: ignore[union-attr]
        if duplicates:
            return Scanned(None, start, end, f"names the member {duplicates[0]!r} twice")
        where = (lone_surrogate_at(value) if _SURROGATE_HINT.search(text, start, end)
                 else None)
        if where is not None:
            return Scanned(None, start, end, "holds a lone UTF-16 surrogate (\\ud800-\\udfff)"
                           + (f" at {where}" if where else ""))
        return Scanned(value, start, end)

    def members(self) -> Iterator[str]:
        """Step into the object at the cursor: yields each member's name with the cursor on its
        value, which the caller must consume (``value()``, or a nested walk) before the next
        step. Ends after the closing brace."""
        self._open("{", "an object")
        if self._close("}"):
            return
        while True:
            match = _NAME.match(self.text, self.pos)
            if match is None:
                raise JsonSyntaxError("expected a member name in double quotes", self.pos)
            raw = match.group(1)
            self.pos = match.end()
            yield _decode_name(raw, match.start()) if "\\" in raw else raw
            if not self._separator("}"):
                return

    def elements(self) -> Iterator[int]:
        """Step into the array at the cursor: yields each element's index with the cursor on
        it, which the caller must consume. Ends after the closing bracket."""
        self._open("[", "an array")
        if self._close("]"):
            return
        index = 0
        while True:
            yield index
            index += 1
            if not self._separator("]"):
                return

    def finish(self) -> None:
        """Nothing but whitespace may follow."""
        if self.pos != len(self.text):
            raise JsonSyntaxError("unexpected data after the JSON value", self.pos)

    def _open(self, char: str, what: str) -> None:
        if self.peek() != char:
            raise JsonSyntaxError(f"expected {what}", self.pos)
        self.pos = _WS.match(self.text, self.pos + 1).end()  # type: ignore[union-attr]

    def _close(self, char: str) -> bool:
        if self.peek() == char:
            self.pos = _WS.match(self.text, self.pos + 1).end()  # type: ignore[union-attr]
            return True
        return False

    def _separator(self, closing: str) -> bool:
        """After a member or element: True at ',' (more follow), False at the closing char."""
        char = self.peek()
        if char not in (",", closing) or not char:
            raise JsonSyntaxError(f"expected ',' or '{closing}'", self.pos)
        self.pos = _WS.match(self.text, self.pos + 1).end()  # type: ignore[union-attr]
        return char == ","
