"""The ``postwire`` command line.

Each subcommand module exposes ``register(sub) -> None`` where ``sub`` is the
``argparse._SubParsersAction[argparse.ArgumentParser]`` of the top-level parser (annotate it so
under ``from __future__ import annotations``; do not import ``Subparsers`` from here at run time,
this module imports the subcommand modules). ``register`` adds its parsers and sets ``handler``
on each leaf via ``parser.set_defaults(handler=fn)``, where ``fn(args) -> int`` returns the exit
status (0 ok, 1 failure, 2 usage/configuration error). Adding a module is one line in
``build_parser`` (plus its import).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from typing import TypeAlias

from cli import dev, operator, reconcile, topics
from shared.core.version import POSTWIRE_VERSION

#: What ``register`` functions receive (argparse's own, private, class).
Subparsers: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"
Handler: TypeAlias = Callable[[argparse.Namespace], int]


def build_parser() -> argparse.ArgumentParser:
    """The full ``postwire`` parser with every subcommand registered."""
    parser = argparse.ArgumentParser(
        prog="postwire",
        description="Postwire: self-hosted webhook delivery. Local stack, migrations, operations.",
    )
    parser.add_argument("--version", action="version", version=f"postwire {POSTWIRE_VERSION}")
    operator.add_connection_options(parser)  # also accepted before the subcommand
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    dev.register(sub)  # dev up, dev infra
    register_migrate(sub)  # migrate
    operator.register(sub)  # dlq, events, replay, replays, audit
    reconcile.register(sub)  # reconcile, ledger
    topics.register(sub)  # topics
    return parser


def register_migrate(sub: Subparsers) -> None:
    """Add ``postwire migrate``."""
    parser = sub.add_parser(
        "migrate",
        help="apply pending database migrations to POSTWIRE_DATABASE_URL",
        description="Apply every pending migration to the database named by "
        "POSTWIRE_DATABASE_URL, then print what was applied. Safe to run repeatedly.",
    )
    parser.set_defaults(handler=cmd_migrate)


def cmd_migrate(args: argparse.Namespace) -> int:
    """Apply migrations. Exit 2 if POSTWIRE_DATABASE_URL is unset, 1 if they cannot be applied."""
    dsn = os.environ.get("POSTWIRE_DATABASE_URL", "").strip()
    if not dsn:
        print(
            "postwire migrate: POSTWIRE_DATABASE_URL is not set "
            "(for example: export POSTWIRE_DATABASE_URL=postgresql://user@host:5432/postwire)",
            file=sys.stderr,
        )
        return 2
    try:
        applied = dev.run_migrations(dsn)
    except dev.MigrationError as exc:
        print(f"postwire migrate: {exc}", file=sys.stderr)
        return 1
    if applied:
        print(f"applied {len(applied)} migration(s): {', '.join(applied)}")
    else:
        print("database schema is up to date; nothing to apply")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``postwire`` console script; returns the exit status."""
    args = build_parser().parse_args(argv)
    handler: Handler = args.handler
    return handler(args)


if __name__ == "__main__":
    sys.exit(main())
