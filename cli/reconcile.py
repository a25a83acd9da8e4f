"""``postwire reconcile`` (producers, ingest API) and ``postwire ledger`` (operators, admin API).

``postwire reconcile FILE`` streams FILE (``-``: stdin; NDJSON or CSV, one id per line) to
``POST /v1/reconcile`` a chunk at a time and prints the answer as it arrives, so neither side
holds the ids in memory. ``--json`` prints the answer's NDJSON lines unchanged.

Exit status of both: 0 nothing is wrong (reconcile: nothing missing, dead or cancelled; open
deliveries are still in progress and do not count; ledger: every check holds), 6 a
discrepancy was found, 1 refused, 2 usage, 3 not found, 4 authentication failed, 5 service
unreachable, 130 interrupted.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from typing import IO, Any

from cli.admin_client import EXIT_UNREACHABLE, EXIT_USAGE, CliError, http_error
from cli.operator import _common, _run
from cli.tables import render_fields

EXIT_DISCREPANCY = 6
EXIT_INTERRUPTED = 130
DEFAULT_INGEST_URL = "http://127.0.0.1:8080"
UPLOAD_CHUNK_BYTES = 1024 * 1024
_LOOPBACK = ("127.0.0.1", "localhost", "::1")
_CONTENT_TYPES = {"ndjson": "application/x-ndjson", "csv": "text/csv"}


def _chunks(stream: IO[bytes]) -> Iterator[bytes]:
    while chunk := stream.read(UPLOAD_CHUNK_BYTES):
        yield chunk


def _format_of(args: argparse.Namespace) -> str:
    if args.format:
        return str(args.format)
    return "csv" if str(args.file).lower().endswith(".csv") else "ndjson"


def open_reconciliation(args: argparse.Namespace, key: str, stream: IO[bytes]) -> Any:
    """POST the ids (chunked) and return the open streaming response; raises CliError."""
    query = {k: v for k, v in (("account_id", args.account), ("id_type", args.id_type),
                               ("from", args.since), ("to", args.until)) if v}
    base = args.url.rstrip("/")
    request = urllib.request.Request(
        f"{base}/v1/reconcile?{urllib.parse.urlencode(query)}", data=_chunks(stream),
        method="POST", headers={"Authorization": f"Bearer {key}",
                                "Content-Type": _CONTENT_TYPES[_format_of(args)],
                                "Accept": "application/x-ndjson"})
    host = urllib.parse.urlsplit(base).hostname or ""
    opener = urllib.request.build_opener(
        *([urllib.request.ProxyHandler({})] if host in _LOOPBACK else []))
    try:
        return opener.open(request, timeout=args.timeout)
    except urllib.error.HTTPError as exc:
        error = http_error(exc.code, exc.read(), base)
        if exc.code in (401, 403):
            error.message = error.message.replace("admin token", "ingest API key").replace(
                "--token or POSTWIRE_ADMIN_TOKEN", "--key or POSTWIRE_API_KEY")
        raise error from exc
    except (urllib.error.URLError, TimeoutError, ConnectionError) as exc:
        raise CliError(f"cannot reach the ingest API at {base} "
                       f"({getattr(exc, 'reason', exc)}); --url or POSTWIRE_INGEST_URL",
                       EXIT_UNREACHABLE) from exc


def human_line(item: dict[str, Any]) -> str:
    """One answer line for people."""
    kind = item["kind"]
    if kind == "missing":
        return f"MISSING   {item['id']}"
    if kind == "open":
        return (f"OPEN      {item['id']}  {item['event_id']}  {item['endpoint_id']}  "
                f"{item['status']}  tries={item['attempt_count']}  "
                f"next={item['next_attempt_at']}")
    if kind == "failed":
        return (f"FAILED    {item['id']}  {item['event_id']}  {item['endpoint_id']}  "
                f"{item['status']}  reason={item['reason']}  last={item['last_status_code']}")
    return json.dumps(item)


def print_summary(summary: dict[str, Any]) -> None:
    deliveries = summary["deliveries"]
    print()
    print(render_fields([
        ("ids received", summary["ids_received"]), ("never accepted", summary["ids_missing"]),
        ("events accepted", summary["events_accepted"]),
        ("fully delivered", summary["events_fully_delivered"]),
        ("still open", summary["events_open"]), ("dead/cancelled", summary["events_failed"]),
        ("without deliveries", summary["events_without_deliveries"]),
        ("deliveries", f"{deliveries['total']} = {deliveries['succeeded']} succeeded + "
                       f"{deliveries['open']} open + {deliveries['dead']} dead + "
                       f"{deliveries['cancelled']} cancelled")]))


def cmd_reconcile(args: argparse.Namespace) -> int:
    """``postwire reconcile FILE``."""
    key = args.key or os.environ.get("POSTWIRE_API_KEY", "").strip()
    if not key:
        print("postwire: no API key: pass --key or set POSTWIRE_API_KEY", file=sys.stderr)
        return EXIT_USAGE
    try:
        if args.file == "-":
            return _reconcile(args, key, sys.stdin.buffer)
        with open(args.file, "rb") as stream:
            return _reconcile(args, key, stream)
    except OSError as exc:
        if isinstance(exc, BrokenPipeError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            return 0
        print(f"postwire: cannot read {args.file}: {exc.strerror or exc}", file=sys.stderr)
        return EXIT_USAGE
    except CliError as exc:
        print(f"postwire: {exc.message}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("\npostwire: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


def _reconcile(args: argparse.Namespace, key: str, stream: IO[bytes]) -> int:
    summary: dict[str, Any] | None = None
    with open_reconciliation(args, key, stream) as response:
        for raw in response:
            if not raw.strip():
                continue
            item = json.loads(raw)
            if args.json:
                sys.stdout.write(raw.decode())
            if item["kind"] == "summary":
                summary = item
            elif item["kind"] == "error":
                raise CliError(f"the reconciliation failed: {item['error']['message']}",
                               EXIT_UNREACHABLE)
            elif not args.json:
                print(human_line(item))
    if summary is None:
        raise CliError("the answer ended before its summary (connection lost); run it again",
                       EXIT_UNREACHABLE)
    if not args.json:
        print_summary(summary)
    return EXIT_DISCREPANCY if summary["ids_missing"] or summary["events_failed"] else 0


def cmd_ledger(args: argparse.Namespace, client: Any) -> int:
    """``postwire ledger``."""
    ledger = client.get("/admin/v1/ledger", **{"from": args.since, "to": args.until})
    if args.json:
        print(json.dumps(ledger, indent=2))
    else:
        by_status = ledger["deliveries_by_status"]
        oldest = ledger["oldest_open_delivery"]
        print(render_fields([
            ("window", f"{ledger['from']} .. {ledger['to']}"),
            ("events accepted", ledger["events_accepted"]),
            ("deliveries created", ledger["deliveries_created"]),
            *[(status, by_status[status]) for status in
              ("succeeded", "dead", "cancelled", "open", "pending", "retrying")],
            ("oldest open", "none" if oldest is None else
             f"{oldest['delivery_id']} ({oldest['status']}, {oldest['age_s']:.0f} s old)"),
            ("balanced", "yes" if ledger["balanced"] else "NO")]))
        for check in ledger["checks"]:
            print(f"{'ok  ' if check['holds'] else 'FAIL'} {check['name']}: {check['detail']}")
    return 0 if ledger["balanced"] else EXIT_DISCREPANCY


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``postwire reconcile`` and ``postwire ledger``."""
    rec = sub.add_parser(
        "reconcile", help="which of these ids did Postwire accept and deliver?",
        description="Stream the ids you sent (Idempotency-Keys or event ids; NDJSON or CSV) "
        "to the ingest API and print which were never accepted, which deliveries are still "
        "open, and which died or were cancelled.",
        epilog="exit status: 0 nothing missing/dead/cancelled, 6 discrepancies, 1 refused, "
        "2 usage, 3 not found, 4 authentication failed, 5 unreachable")
    rec.add_argument("file", help="the ids, one per line ('-' for stdin)")
    rec.add_argument("--account", required=True, help="account the ids were sent for")
    rec.add_argument("--id-type", choices=("idempotency_key", "event_id"),
                     default="idempotency_key", help="what the ids are (default %(default)s)")
    rec.add_argument("--format", choices=("ndjson", "csv"), default=None,
                     help="file format (default: csv for *.csv, else ndjson)")
    rec.add_argument("--from", dest="since", help="events accepted at or after (RFC 3339)")
    rec.add_argument("--to", dest="until", help="events accepted before (RFC 3339)")
    rec.add_argument("--url", default=os.environ.get("POSTWIRE_INGEST_URL", DEFAULT_INGEST_URL),
                     help="ingest API base URL (default: $POSTWIRE_INGEST_URL or %(default)s)")
    rec.add_argument("--key", default=None, help="ingest API key (default: $POSTWIRE_API_KEY)")
    rec.add_argument("--json", action="store_true", help="print the answer's NDJSON lines")
    rec.add_argument("--timeout", type=float, default=600.0,
                     help="seconds to wait on the service at any one point (default %(default)s)")
    rec.set_defaults(handler=cmd_reconcile)

    led = sub.add_parser(
        "ledger", parents=[_common()], help="does the platform's ledger balance?",
        description="Events accepted in a window against what became of their deliveries: "
        "deliveries created = succeeded + dead + cancelled + open, checked; the oldest open "
        "delivery and its age.",
        epilog="exit status: 0 balanced, 6 does not balance, 1 refused, 2 usage, "
        "4 authentication failed, 5 unreachable")
    led.add_argument("--from", dest="since",
                     help="accepted at or after (default: 24 h before --to)")
    led.add_argument("--to", dest="until", help="accepted before (default: now)")
    led.set_defaults(handler=_run(cmd_ledger))
