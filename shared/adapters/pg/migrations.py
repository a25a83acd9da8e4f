"""Versioned SQL migrations.

Files ``migrations/NNNN_name.sql`` are applied in order, each in its own transaction, and
recorded in ``schema_migrations``. Applying is idempotent and safe with several runners at once:
a session advisory lock serialises them. Services call :func:`ensure_schema_current` at start and
refuse to run against an out-of-date schema.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from importlib import resources

import asyncpg

from shared.core.errors import ConfigError

_LOCK_ID = 0x706F7374_77697265 & 0x7FFFFFFFFFFFFFFF  # "postwire"


@dataclass(frozen=True)
class Migration:
    """One SQL file: ``version`` is its file stem, e.g. ``0001_core``."""

    version: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


def load_migrations() -> list[Migration]:
    """All migration files shipped with the package, in version order."""
    folder = resources.files("shared.adapters.pg") / "migrations"
    found = [
        Migration(entry.name.removesuffix(".sql"), entry.read_text(encoding="utf-8"))
        for entry in folder.iterdir()
        if entry.name.endswith(".sql")
    ]
    return sorted(found, key=lambda m: m.version)


async def _applied(conn: asyncpg.Connection) -> dict[str, str]:
    exists = await conn.fetchval("SELECT to_regclass('schema_migrations') IS NOT NULL")
    if not exists:
        return {}
    rows = await conn.fetch("SELECT version, checksum FROM schema_migrations")
    return {r["version"]: r["checksum"] for r in rows}


async def apply_migrations(dsn: str) -> list[str]:
    """Apply every pending migration to ``dsn``; returns the versions applied (may be empty).

    Raises ConfigError when an applied migration's file changed since (checksum mismatch).
    """
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("SELECT pg_advisory_lock($1)", _LOCK_ID)
        try:
            await conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations ("
                " version text PRIMARY KEY, checksum text NOT NULL,"
                " applied_at timestamptz NOT NULL DEFAULT now())"
            )
            applied = await _applied(conn)
            done: list[str] = []
            for migration in load_migrations():
                if migration.version in applied:
                    if applied[migration.version] != migration.checksum:
                        raise ConfigError(
                            f"migration {migration.version} was changed after it was applied"
                        )
                    continue
                async with conn.transaction():
                    await conn.execute(migration.sql)
                    await conn.execute(
                        "INSERT INTO schema_migrations (version, checksum) VALUES ($1, $2)",
                        migration.version, migration.checksum,
                    )
                done.append(migration.version)
            return done
        finally:
            await conn.execute("SELECT pg_advisory_unlock($1)", _LOCK_ID)
    finally:
        await conn.close()


async def ensure_schema_current(conn: asyncpg.Connection) -> None:
    """Raise ConfigError (one clear line) unless every shipped migration is applied."""
    applied = await _applied(conn)
    missing = [m.version for m in load_migrations() if m.version not in applied]
    if missing:
        raise ConfigError(
            "database schema is out of date (missing " + ", ".join(missing)
            + "): run `postwire migrate` first"
        )
