"""``postwire dev env``: shell ``export`` lines for the running dev stack.

``eval "$(.venv/bin/postwire dev env)"`` in a second terminal sets ``POSTWIRE_API_KEY``,
``POSTWIRE_INGEST_URL``, ``POSTWIRE_ADMIN_URL`` and ``POSTWIRE_ADMIN_TOKEN`` from what
``postwire dev up`` wrote (see :mod:`cli.dev_context`). Exit status 1, with nothing on
stdout, when no running dev stack is found.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from cli.dev_context import find_dev_dir, read_dev_context

if TYPE_CHECKING:
    from cli.main import Subparsers


def register(actions: Subparsers) -> None:
    """Add ``postwire dev env`` to the ``dev`` subcommands."""
    parser = actions.add_parser(
        "env", help="print export lines for the running dev stack (use with eval)",
        description="Print `export` lines with the running dev stack's API key, admin token "
        "and URLs, found under .postwire/dev from the current directory upwards.")
    parser.add_argument("--dir", type=Path, default=None,
                        help="the dev state dir (default: the nearest .postwire/dev)")
    parser.set_defaults(handler=cmd_env)


def cmd_env(args: argparse.Namespace) -> int:
    """Print the export lines; 1 when no running stack is found."""
    directory = args.dir or find_dev_dir()
    context = read_dev_context(directory) if directory else None
    if context is None or context.ingest_url is None or context.api_key is None:
        print("postwire dev env: no running dev stack found under .postwire/dev here or "
              "above; start one with `make run` (or `postwire dev up`)", file=sys.stderr)
        return 1
    values = {"POSTWIRE_API_KEY": context.api_key, "POSTWIRE_INGEST_URL": context.ingest_url,
              "POSTWIRE_ADMIN_URL": context.admin_url, "POSTWIRE_ADMIN_TOKEN":
              context.admin_token}
    for name, value in values.items():
        if value is not None:
            print(f"export {name}={shlex.quote(value)}")
    return 0
