"""Browser sessions and one-time portal links in Postgres.

A session cookie carries 32 random bytes (URL-safe base64); the table keeps only their SHA-256,
so neither a database dump nor a log line can be turned back into a cookie. Sessions expire
absolutely (no sliding renewal); expired rows are ignored at once and purged by
:func:`purge_expired`. A portal link is usable exactly once: the request that redeems it
marks it used in the same statement that reads it (looking at it does not).
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

import asyncpg

SessionKind = Literal["console", "portal"]


def new_token() -> str:
    """A fresh unguessable token (256 bits, URL-safe)."""
    return secrets.token_urlsafe(32)


def token_hash(token: str) -> bytes:
    """What the database stores for ``token``."""
    return hashlib.sha256(token.encode()).digest()


@dataclass(frozen=True)
class WebSession:
    """A live session: who it is (operator name or account id) and its CSRF token."""

    kind: SessionKind
    principal: str
    csrf_token: str
    expires_at: datetime

    @property
    def actor(self) -> str:
        """The name audit rows record: the operator, or ``portal:<account>``."""
        return self.principal if self.kind == "console" else f"portal:{self.principal}"


async def create_session(conn: asyncpg.Connection | asyncpg.Pool, *, kind: SessionKind,
                         principal: str, lifetime_s: float | None = None,
                         expires_at: datetime | None = None) -> tuple[str, WebSession]:
    """Store a new session ending after ``lifetime_s`` (or at ``expires_at``); returns the
    cookie value and the session."""
    token = new_token()
    csrf = new_token()
    row = await conn.fetchrow(
        "INSERT INTO web_sessions (id_hash, kind, principal, csrf_token, expires_at)"
        " VALUES ($1, $2, $3, $4, coalesce($6, now() + make_interval(secs => $5)))"
        " RETURNING expires_at",
        token_hash(token), kind, principal, csrf, lifetime_s, expires_at)
    return token, WebSession(kind, principal, csrf, row["expires_at"])


async def load_session(pool: asyncpg.Pool, kind: SessionKind, token: str) -> WebSession | None:
    """The unexpired session of ``kind`` whose cookie is ``token``, or None."""
    row = await pool.fetchrow(
        "SELECT principal, csrf_token, expires_at FROM web_sessions"
        " WHERE id_hash = $1 AND kind = $2 AND expires_at > now()", token_hash(token), kind)
    if row is None:
        return None
    return WebSession(kind, row["principal"], row["csrf_token"], row["expires_at"])


async def end_session(pool: asyncpg.Pool, token: str) -> None:
    """Forget a session (logout); unknown tokens are ignored."""
    await pool.execute("DELETE FROM web_sessions WHERE id_hash = $1", token_hash(token))


async def create_portal_link(conn: asyncpg.Connection, *, account_id: str, operator: str,
                             expires_in_s: int) -> tuple[str, datetime]:
    """A one-time token for ``account_id``, valid ``expires_in_s``; returns it and its expiry."""
    token = new_token()
    expires = await conn.fetchval(
        "INSERT INTO portal_links (token_hash, account_id, created_by, expires_at)"
        " VALUES ($1, $2, $3, now() + make_interval(secs => $4)) RETURNING expires_at",
        token_hash(token), account_id, operator, expires_in_s)
    return token, expires


async def peek_portal_link(pool: asyncpg.Pool, token: str) -> str | None:
    """The account of an unused, unexpired link (nothing is marked), or None."""
    value: str | None = await pool.fetchval(
        "SELECT account_id FROM portal_links WHERE token_hash = $1 AND used_at IS NULL"
        " AND expires_at > now()", token_hash(token))
    return value


async def redeem_portal_link(conn: asyncpg.Connection, token: str) -> tuple[str, datetime] | None:
    """Mark the link used and return ``(account_id, expires_at)``; None when the token is
    unknown, already used or expired (a concurrent second use loses: the row lock decides)."""
    row = await conn.fetchrow(
        "UPDATE portal_links SET used_at = now()"
        " WHERE token_hash = $1 AND used_at IS NULL AND expires_at > now()"
        " RETURNING account_id, expires_at", token_hash(token))
    return None if row is None else (row["account_id"], row["expires_at"])


async def purge_expired(pool: asyncpg.Pool) -> int:
    """Delete expired sessions and links; returns how many rows went."""
    total = 0
    for table in ("web_sessions", "portal_links"):
        status = await pool.execute(f"DELETE FROM {table} WHERE expires_at < now()")
        total += int(status.split()[-1])
    return total
