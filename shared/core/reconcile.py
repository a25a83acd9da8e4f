"""Producer reconciliation: reading the ids a producer uploads, and how they compare. Pure.

A producer uploads the ids it believes it sent, one per line, either as NDJSON (each line a
JSON string, or an object whose ``"id"`` is a string) or as CSV (the first column; RFC 4180
quotes allowed; a first row whose first field is ``id``, ``idempotency_key`` or ``event_id``
is a header and skipped; further columns are ignored). Blank lines are skipped.

The normalisation rule (:func:`normalise_id`), the same on both sides of the comparison:

- Surrounding whitespace never matters: spaces, tabs, CR and LF around an id are removed
  (exports and spreadsheets add them). Events store their Idempotency-Key trimmed of
  surrounding spaces too, so ``" order-42 "`` and ``"order-42"`` are the same id.
- Event ids are case-insensitive (a ULID is Crockford base32, which is): ``EVT_01J...``,
  ``evt_01j...`` and ``evt_01J...`` are the same event, compared in the canonical form
  ``evt_`` + upper case.
- Idempotency-Keys are case-sensitive, exactly as ingest compares them: ``Order-42`` and
  ``order-42`` are two different keys (ingest accepted them as two events), so a key that
  differs from an accepted one only in case is reported as never accepted.

An id that cannot be a valid id of its kind (too long, not printable) is kept: it is simply
never found, so it is reported as never accepted.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterator
from typing import Literal

import orjson

from shared.core.errors import InvalidRequest

IdType = Literal["idempotency_key", "event_id"]
UploadFormat = Literal["ndjson", "csv"]
ID_TYPES: tuple[IdType, ...] = ("idempotency_key", "event_id")
MAX_LINE_BYTES = 4096
_WHITESPACE = " \t\r\n"
_HEADERS = frozenset({"id", "idempotency_key", "event_id"})
_COPY_SPECIAL_RE = re.compile("[\\\\\t\n\r\x00]")


def normalise_id(raw: str, id_type: IdType) -> str:
    """The canonical form of one uploaded id (module docstring); may be empty."""
    value = raw.strip(_WHITESPACE)
    if id_type == "event_id":
        head, sep, body = value.partition("_")
        if sep:
            return f"{head.lower()}_{body.upper()}"
        return value.upper()
    return value


def copy_text_field(value: str) -> str:
    """``value`` escaped for one field of PostgreSQL's COPY text format (no NUL allowed)."""
    if _COPY_SPECIAL_RE.search(value) is None:  # the common case, one C-level scan
        return value
    if "\x00" in value:
        raise InvalidRequest("an id contains a NUL character", param="body")
    return (value.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n")
            .replace("\r", "\\r"))


class LineSplitter:
    """Cuts a byte stream into lines (LF or CRLF), holding back at most one partial line.

    Raises InvalidRequest when a line exceeds :data:`MAX_LINE_BYTES`, so memory stays bounded
    by the chunk size plus one line.
    """

    def __init__(self) -> None:
        self._rest = b""

    def feed(self, chunk: bytes) -> list[bytes]:
        """Complete lines in ``rest + chunk`` (without their line ends)."""
        data = self._rest + chunk if self._rest else chunk
        lines = data.split(b"\n")
        self._rest = lines.pop()
        if len(self._rest) > MAX_LINE_BYTES:
            raise InvalidRequest(f"a line is longer than {MAX_LINE_BYTES} bytes", param="body")
        return lines

    def finish(self) -> list[bytes]:
        """The last line when the stream did not end with a line end."""
        rest, self._rest = self._rest, b""
        return [rest] if rest else []


class IdParser:
    """Turns uploaded lines into raw ids (not yet normalised), counting lines for errors."""

    def __init__(self, upload_format: UploadFormat) -> None:
        self.format = upload_format
        self.line_no = 0

    def ids(self, lines: list[bytes]) -> Iterator[str]:
        """The id of each non-blank line; InvalidRequest (param ``body``) names a bad line."""
        for line in lines:
            self.line_no += 1
            if len(line) > MAX_LINE_BYTES:
                raise InvalidRequest(f"line {self.line_no} is longer than {MAX_LINE_BYTES} bytes",
                                     param="body")
            if not line.strip():
                continue
            value = (self._ndjson(line) if self.format == "ndjson" else self._csv(line))
            if value is not None:
                yield value

    def _ndjson(self, line: bytes) -> str:
        try:
            item = orjson.loads(line)
        except orjson.JSONDecodeError as exc:
            raise self._bad("is not JSON") from exc
        if isinstance(item, dict) and len(item) >= 1:
            item = item.get("id")
        if not isinstance(item, str):
            raise self._bad('must be a JSON string or an object with a string "id"')
        return item

    def _csv(self, line: bytes) -> str | None:
        try:
            text = line.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise self._bad("is not UTF-8") from exc
        if '"' in text:
            try:
                row = next(csv.reader([text.rstrip("\r")], strict=True))
            except (csv.Error, StopIteration) as exc:
                raise self._bad("is not valid CSV") from exc
            first = row[0] if row else ""
        else:
            first = text.split(",", 1)[0]
        if self.line_no == 1 and first.strip(_WHITESPACE).lower() in _HEADERS:
            return None
        return first

    def _bad(self, what: str) -> InvalidRequest:
        return InvalidRequest(f"line {self.line_no} {what}", param="body")
