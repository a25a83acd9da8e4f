"""Operator CLI pieces without a service: table rendering, the progress line, HTTP error
translation to exit statuses, and the argument wiring of every operator command."""

from __future__ import annotations

import json

import pytest

from cli.admin_client import (
    EXIT_AUTH,
    EXIT_NOT_FOUND,
    EXIT_REFUSED,
    EXIT_UNREACHABLE,
    http_error,
)
from cli.main import build_parser, main
from cli.tables import cell, progress_line, render_fields, render_table


def test_table_columns_are_aligned_and_cells_cleaned() -> None:
    text = render_table(["ID", "REASON"], [["dlv_1", "line\nbreak"], ["dlv_22", None]])
    assert text.splitlines() == ["ID      REASON", "dlv_1   line break", "dlv_22  -"]


def test_long_cells_are_cut() -> None:
    assert cell("x" * 100) == "x" * 45 + "..."
    assert len(cell("y" * 100, 10)) == 10


def test_fields_are_aligned() -> None:
    assert render_fields([("id", "rpl_1"), ("status", "running")]).splitlines() == [
        "id:     rpl_1", "status: running"]


def test_progress_line() -> None:
    job = {"matched": 200, "queued": 90, "skipped": 10, "status": "running"}
    line = progress_line(job, width=10, rate=99.6)
    assert line.startswith("[#####-----]  50%  100/200  queued 90  skipped 10  running")
    assert line.endswith("~100/s")
    done = progress_line({"matched": 0, "queued": 0, "skipped": 0, "status": "completed"}, 4)
    assert done.startswith("[####] 100%  0/0") and "/s" not in done


@pytest.mark.parametrize(("status", "code", "words"), [
    (401, EXIT_AUTH, "authentication failed"),
    (403, EXIT_AUTH, "authentication failed"),
    (404, EXIT_NOT_FOUND, "not found"),
    (409, EXIT_REFUSED, "conflict"),
    (400, EXIT_REFUSED, "invalid_request"),
    (503, EXIT_UNREACHABLE, "unavailable"),
])
def test_http_errors_map_to_exit_codes(status: int, code: int, words: str) -> None:
    kinds = {401: "authentication_failed", 403: "forbidden", 404: "not_found", 409: "conflict",
             400: "invalid_request", 503: "unavailable"}
    body = json.dumps({"error": {"type": kinds[status], "message": "the reason",
                                 "param": None}}).encode()
    error = http_error(status, body, "http://127.0.0.1:8082")
    assert error.exit_code == code
    assert words in error.message and "the reason" in error.message


def test_a_non_contract_error_body_is_quoted() -> None:
    error = http_error(502, b"<html>Bad Gateway</html>", "http://x")
    assert error.exit_code == EXIT_REFUSED and "Bad Gateway" in error.message


@pytest.mark.parametrize("argv", [
    ["dlq", "list", "--endpoint", "ep_1", "--since", "2026-11-22T10:00:00Z", "--json"],
    ["events", "show", "evt_1"],
    ["replay", "evt_1", "--reason", "r", "--endpoint", "ep_1", "--endpoint", "ep_2",
     "--include-succeeded"],
    ["replays", "start", "--reason", "r", "--account", "acme", "--rate", "50", "--no-wait"],
    ["replays", "show", "rpl_1", "--watch"],
    ["replays", "cancel", "rpl_1", "--reason", "oops"],
    ["audit", "--limit", "5", "--operator", "alice"],
])
def test_every_operator_command_parses(argv: list[str]) -> None:
    args = build_parser().parse_args(argv)
    assert callable(args.handler)


def test_replay_collects_repeated_endpoints() -> None:
    args = build_parser().parse_args(["replay", "evt_1", "--reason", "r", "--endpoint", "ep_1",
                                      "--endpoint", "ep_2"])
    assert args.endpoint == ["ep_1", "ep_2"] and args.include_succeeded is False


def test_reason_is_required_for_replays() -> None:
    with pytest.raises(SystemExit) as info:
        build_parser().parse_args(["replay", "evt_1"])
    assert info.value.code == 2


def test_missing_token_exits_2(monkeypatch: pytest.MonkeyPatch,
                               capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.delenv("POSTWIRE_ADMIN_TOKEN", raising=False)
    assert main(["audit"]) == 2
    assert "no admin token" in capsys.readouterr().err
