"""Operator commands of ``postwire``: dead letters, event inspection, replays, merchant portal
links, audit log.

They talk to the admin API over HTTP (``--url``, default ``$POSTWIRE_ADMIN_URL`` or
http://127.0.0.1:8082) with an admin token (``--token`` or ``$POSTWIRE_ADMIN_TOKEN``). Exit
status: 0 ok, 1 refused, 2 usage, 3 not found, 4 authentication failed, 5 service unreachable,
130 interrupted (see :mod:`cli.admin_client`).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable
from typing import Any

from cli.admin_client import DEFAULT_URL, EXIT_USAGE, AdminClient, CliError
from cli.dev_context import load_dev_context
from cli.tables import progress_line, render_fields, render_table

EXIT_INTERRUPTED = 130
Command = Callable[[argparse.Namespace, AdminClient], int]
EXIT_CODES_HELP = ("exit status: 0 ok, 1 request refused, 2 usage, 3 not found, "
                   "4 authentication failed, 5 admin service unreachable, 130 interrupted")


def add_connection_options(parser: argparse.ArgumentParser) -> None:
    """``--url``, ``--token`` and ``--json``. They are added both to the top-level parser and
    to every operator command, with suppressed defaults, so they work before or after the
    subcommand; :func:`_resolve` fills in what was not given."""
    parser.add_argument("--url", default=argparse.SUPPRESS,
                        help="admin API base URL (default: $POSTWIRE_ADMIN_URL, else the "
                        f"running dev stack's, else {DEFAULT_URL})")
    parser.add_argument("--token", default=argparse.SUPPRESS,
                        help="admin bearer token (default: $POSTWIRE_ADMIN_TOKEN, else the "
                        "running dev stack's)")
    parser.add_argument("--json", action="store_true", default=argparse.SUPPRESS,
                        help="print raw JSON for scripts")


def _common() -> argparse.ArgumentParser:
    parent = argparse.ArgumentParser(add_help=False)
    add_connection_options(parent)
    return parent


def _resolve(args: argparse.Namespace) -> tuple[str, str]:
    """(url, token): options first, then ``POSTWIRE_ADMIN_URL`` / ``POSTWIRE_ADMIN_TOKEN``,
    then what a ``postwire dev up`` under the current directory wrote, then the default URL.
    Sets ``args.url``, ``args.token`` and ``args.json`` (False when not given)."""
    args.json = getattr(args, "json", False)
    dev = load_dev_context()
    url = (getattr(args, "url", None) or os.environ.get("POSTWIRE_ADMIN_URL", "").strip()
           or (dev.admin_url if dev else None) or DEFAULT_URL)
    token = (getattr(args, "token", None) or os.environ.get("POSTWIRE_ADMIN_TOKEN", "").strip()
             or (dev.admin_token if dev else None) or "")
    args.url, args.token = url, token
    return url, token


def _run(command: Command) -> Callable[[argparse.Namespace], int]:
    """Wrap a command: build the client, turn CliError and Ctrl-C into an exit status."""

    def handler(args: argparse.Namespace) -> int:
        url, token = _resolve(args)
        if not token:
            print("postwire: no admin token: pass --token, set POSTWIRE_ADMIN_TOKEN "
                  "(an operator token from POSTWIRE_ADMIN_TOKENS), or run this inside a "
                  "checkout where `make run` is running", file=sys.stderr)
            return EXIT_USAGE
        try:
            return command(args, AdminClient(url, token))
        except CliError as exc:
            print(f"postwire: {exc.message}", file=sys.stderr)
            return exc.exit_code
        except KeyboardInterrupt:
            print("\npostwire: interrupted", file=sys.stderr)
            return EXIT_INTERRUPTED
        except BrokenPipeError:  # the reader went away (| head): stop quietly
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            return 0

    return handler


def _print_json(value: Any) -> None:
    print(json.dumps(value, indent=2, sort_keys=False))


def cmd_dlq_list(args: argparse.Namespace, client: AdminClient) -> int:
    """``postwire dlq list``: dead letters, newest first."""
    items = client.walk("/admin/v1/dead-letters", args.limit, endpoint_id=args.endpoint,
                        account_id=args.account, type=args.type, since=args.since,
                        until=args.until)
    if args.json:
        _print_json(items)
        return 0
    if not items:
        print("no dead letters match")
        return 0
    print(render_table(
        ["DEAD AT", "DELIVERY", "EVENT", "ENDPOINT", "TYPE", "REASON", "TRIES", "LAST",
         "REPLAYS", "NOW"],
        [[d["dead_at"], d["delivery_id"], d["event_id"], d["endpoint_id"], d["type"],
          d["reason"], d["attempt_count"], d["last_status_code"] or d["last_error"],
          d["replay_count"], d.get("delivery_status")] for d in items]))
    return 0


def cmd_events_show(args: argparse.Namespace, client: AdminClient) -> int:
    """``postwire events show EVT``: the event, its deliveries and every attempt."""
    event = client.get(f"/admin/v1/events/{args.event_id}")
    if args.json:
        _print_json(event)
        return 0
    print(render_fields([("event", event["id"]), ("type", event["type"]),
                         ("account", event["account_id"]), ("created", event["created_at"]),
                         ("ordering key", event["ordering_key"]),
                         ("deliveries", event["delivery_count"])]))
    for d in event["deliveries"]:
        dead = d.get("dead_letter") or {}
        print(f"\ndelivery {d['id']} -> {d['endpoint_id']}: {d['status']}"
              f" (attempts {d['attempt_count']}, replays {dead.get('replay_count', 0)})")
        if dead:
            print(f"  dead at {dead['dead_at']}: {dead['reason']}")
        if d["attempts"]:
            print("  " + render_table(
                ["#", "STARTED", "MS", "STATUS", "ERROR", "RESPONSE"],
                [[a["attempt"], a["started_at"], a["duration_ms"], a["status_code"], a["error"],
                  a["response_excerpt"]] for a in d["attempts"]]).replace("\n", "\n  "))
    return 0


def cmd_replay(args: argparse.Namespace, client: AdminClient) -> int:
    """``postwire replay EVT --reason ...``: replay one event's dead deliveries."""
    body: dict[str, Any] = {"reason": args.reason, "include_succeeded": args.include_succeeded}
    if args.endpoint:
        body["endpoint_ids"] = args.endpoint
    headers = {"Idempotency-Key": args.idempotency_key} if args.idempotency_key else None
    result = client.post(f"/admin/v1/events/{args.event_id}/replay", body, headers)
    if args.json:
        _print_json(result)
        return 0
    queued = sum(1 for d in result["deliveries"] if d["outcome"] == "queued")
    print(f"replay {result['replay_id']}: {queued} of {len(result['deliveries'])} "
          f"deliveries queued")
    if result["deliveries"]:
        print(render_table(["DELIVERY", "ENDPOINT", "OUTCOME", "REPLAYS"],
                           [[d["delivery_id"], d["endpoint_id"], d["outcome"],
                             d.get("replay_count")] for d in result["deliveries"]]))
    return 0


def _filter_of(args: argparse.Namespace) -> dict[str, str]:
    raw = {"endpoint_id": args.endpoint, "account_id": args.account, "type": args.type,
           "since": args.since, "until": args.until}
    return {k: v for k, v in raw.items() if v is not None}


def watch_job(client: AdminClient, job_id: str, interval_s: float = 0.5) -> dict[str, Any]:
    """Poll a replay and draw its progress until it is no longer running; returns the job.

    On a terminal the bar redraws in place; otherwise a line is printed when progress moved
    (at most every 2 s) and at the end. Ctrl-C raises KeyboardInterrupt to the caller.
    """
    tty = sys.stdout.isatty()
    last_printed, last_done, last_at = -1.0, None, time.monotonic()
    rate: float | None = None
    while True:
        job = client.get(f"/admin/v1/replays/{job_id}")
        now, done = time.monotonic(), job["queued"] + job["skipped"]
        if last_done is not None and now > last_at:
            rate = (done - last_done) / (now - last_at)
        last_done, last_at = done, now
        line = progress_line(job, rate=rate)
        finished = job["status"] != "running"
        if tty:
            sys.stdout.write("\r" + line.ljust(100) + ("\n" if finished else ""))
            sys.stdout.flush()
        elif finished or now - last_printed >= 2.0:
            print(line, flush=True)
            last_printed = now
        if finished:
            return dict(job)
        time.sleep(interval_s)


def _watch_hint(job_id: str) -> str:
    return (f"the replay keeps running on the server. Watch it: postwire replays show {job_id}"
            f" --watch   Stop it: postwire replays cancel {job_id}")


def _job_exit(job: dict[str, Any]) -> int:
    return 0 if job["status"] == "completed" else 1


def cmd_replays_start(args: argparse.Namespace, client: AdminClient) -> int:
    """``postwire replays start``: start a bulk replay and follow it to the end."""
    job = client.post("/admin/v1/replays", {"reason": args.reason, "filter": _filter_of(args),
                                            "max_per_second": args.rate})
    if args.json:
        _print_json(job)
        return 0
    print(f"bulk replay {job['id']} started: {job['matched']} dead deliveries matched, "
          f"at most {args.rate}/s")
    if args.no_wait:
        print(_watch_hint(job["id"]))
        return 0
    try:
        final = watch_job(client, job["id"])
    except KeyboardInterrupt:
        print(f"\nstopped watching; {_watch_hint(job['id'])}")
        return EXIT_INTERRUPTED
    print(f"bulk replay {final['id']} {final['status']}: queued {final['queued']}, "
          f"skipped {final['skipped']} of {final['matched']}")
    return _job_exit(final)


def cmd_replays_show(args: argparse.Namespace, client: AdminClient) -> int:
    """``postwire replays show ID [--watch]``."""
    job = client.get(f"/admin/v1/replays/{args.replay_id}")
    if args.json:
        _print_json(job)
        return 0
    print(render_fields([(k, job.get(k)) for k in (
        "id", "kind", "status", "matched", "queued", "skipped", "max_per_second", "created_by",
        "reason", "filter", "created_at", "finished_at", "error")]))
    if args.watch and job["status"] == "running":
        try:
            job = watch_job(client, args.replay_id)
        except KeyboardInterrupt:
            print(f"\nstopped watching; {_watch_hint(args.replay_id)}")
            return EXIT_INTERRUPTED
    return 0


def cmd_replays_cancel(args: argparse.Namespace, client: AdminClient) -> int:
    """``postwire replays cancel ID``."""
    body = {"reason": args.reason} if args.reason else {}
    job = client.post(f"/admin/v1/replays/{args.replay_id}/cancel", body)
    if args.json:
        _print_json(job)
        return 0
    print(f"bulk replay {job['id']} {job['status']}: queued {job['queued']}, skipped "
          f"{job['skipped']} of {job['matched']} before it stopped")
    return 0


def cmd_audit(args: argparse.Namespace, client: AdminClient) -> int:
    """``postwire audit``: the operator audit log, newest first."""
    items = client.walk("/admin/v1/audit-log", args.limit, operator=args.operator,
                        action=args.action, target=args.target)
    if args.json:
        _print_json(items)
        return 0
    if not items:
        print("the audit log is empty")
        return 0
    print(render_table(["AT", "OPERATOR", "ACTION", "TARGET", "REASON"],
                       [[e["at"], e["operator"], e["action"], e["target"], e["reason"]]
                        for e in items]))
    return 0


def cmd_portal_link(args: argparse.Namespace, client: AdminClient) -> int:
    """``postwire portal-link ACCOUNT``: a one-time merchant portal URL for the account."""
    made = client.post("/admin/v1/portal-sessions",
                       {"account_id": args.account_id, "expires_in_s": args.expires_in})
    if args.json:
        _print_json(made)
        return 0
    print(made["url"])
    print(f"works once; the portal session for {made['account_id']} ends at "
          f"{made['expires_at']}", file=sys.stderr)
    return 0


def _filters(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--endpoint", metavar="ID", help="only this endpoint (ep_...)")
    parser.add_argument("--account", metavar="ID", help="only this account")
    parser.add_argument("--type", metavar="T", help="only this event type")
    parser.add_argument("--since", metavar="TS", help="dead at or after (RFC 3339)")
    parser.add_argument("--until", metavar="TS", help="dead before (RFC 3339)")


def _leaf(sub: argparse._SubParsersAction[argparse.ArgumentParser], name: str, help_: str,
          command: Command) -> argparse.ArgumentParser:
    parser = sub.add_parser(name, help=help_, description=help_ + ".", epilog=EXIT_CODES_HELP,
                            parents=[_common()])
    parser.set_defaults(handler=_run(command))
    return parser


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``dlq``, ``events``, ``replay``, ``replays``, ``portal-link`` and ``audit`` to
    ``postwire``."""
    dlq = sub.add_parser("dlq", help="dead letters").add_subparsers(
        dest="dlq_command", metavar="COMMAND", required=True)
    listing = _leaf(dlq, "list", "list dead letters, newest first", cmd_dlq_list)
    _filters(listing)
    listing.add_argument("--limit", type=int, default=20, metavar="N", help="rows (default 20)")
    events = sub.add_parser("events", help="inspect events").add_subparsers(
        dest="events_command", metavar="COMMAND", required=True)
    _leaf(events, "show", "show an event, its deliveries and every attempt",
          cmd_events_show).add_argument("event_id", metavar="EVT")
    replay = _leaf(sub, "replay", "replay one event's dead deliveries", cmd_replay)
    replay.add_argument("event_id", metavar="EVT")
    replay.add_argument("--reason", required=True, help="why (recorded in the audit log)")
    replay.add_argument("--endpoint", action="append", metavar="ID",
                        help="only the delivery to this endpoint (repeatable)")
    replay.add_argument("--include-succeeded", action="store_true",
                        help="also resend deliveries that succeeded")
    replay.add_argument("--idempotency-key", metavar="KEY",
                        help="makes a retried identical request safe")
    replays = sub.add_parser("replays", help="bulk replays").add_subparsers(
        dest="replays_command", metavar="COMMAND", required=True)
    start = _leaf(replays, "start", "replay every matching dead delivery at a bounded rate",
                  cmd_replays_start)
    start.add_argument("--reason", required=True, help="why (recorded in the audit log)")
    _filters(start)
    start.add_argument("--rate", type=int, default=100, metavar="N",
                       help="at most N deliveries per second (default 100)")
    start.add_argument("--no-wait", action="store_true", help="do not follow the progress")
    show = _leaf(replays, "show", "show a replay's progress", cmd_replays_show)
    show.add_argument("replay_id", metavar="ID")
    show.add_argument("--watch", action="store_true", help="follow it until it ends")
    cancel = _leaf(replays, "cancel", "cancel a running bulk replay", cmd_replays_cancel)
    cancel.add_argument("replay_id", metavar="ID")
    cancel.add_argument("--reason", help="why (recorded in the audit log)")
    link = _leaf(sub, "portal-link", "make a one-time merchant portal link for an account",
                 cmd_portal_link)
    link.add_argument("account_id", metavar="ACCOUNT")
    link.add_argument("--expires-in", type=int, default=3600, metavar="S",
                      help="seconds the link and its session last (60..86400, default 3600)")
    audit = _leaf(sub, "audit", "show the operator audit log, newest first", cmd_audit)
    audit.add_argument("--limit", type=int, default=20, metavar="N", help="rows (default 20)")
    for name in ("operator", "action", "target"):
        audit.add_argument(f"--{name}", help=f"only entries with this {name}")
