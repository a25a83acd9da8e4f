"""Argument parsing and the small pure helpers of the ``postwire`` CLI (no processes)."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from cli import dev
from cli.main import build_parser, cmd_migrate, main
from deploy.embedded import devstate


def test_dev_up_defaults() -> None:
    args = build_parser().parse_args(["dev", "up"])
    assert args.handler is dev.cmd_up
    assert args.dir == Path(".postwire/dev")
    assert args.pg_port is None
    assert args.broker_port is None
    assert args.no_migrate is False


def test_dev_infra_options() -> None:
    argv = ["dev", "infra", "--dir", "x", "--pg-port", "6000", "--broker-port", "6001"]
    args = build_parser().parse_args([*argv, "--no-migrate"])
    assert args.handler is dev.cmd_infra
    assert args.dir == Path("x")
    assert (args.pg_port, args.broker_port) == (6000, 6001)
    assert args.no_migrate is True


def test_migrate_subcommand() -> None:
    assert build_parser().parse_args(["migrate"]).handler is cmd_migrate


@pytest.mark.parametrize(
    "argv",
    [[], ["dev"], ["dev", "down"], ["dev", "up", "--pg-port", "abc"], ["nope"], ["migrate", "x"]],
)
def test_bad_arguments_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        build_parser().parse_args(argv)
    assert exc.value.code == 2
    assert "usage:" in capsys.readouterr().err


def test_help_lists_subcommands(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert "dev" in out and "migrate" in out


def test_migrate_without_database_url_exits_2(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("POSTWIRE_DATABASE_URL", raising=False)
    assert main(["migrate"]) == 2
    err = capsys.readouterr().err
    assert "POSTWIRE_DATABASE_URL is not set" in err
    assert len(err.strip().splitlines()) == 1


def test_second_lock_holder_is_refused(tmp_path: Path) -> None:
    lock = devstate.acquire_lock(tmp_path / "dev.lock")
    try:
        with pytest.raises(devstate.AlreadyRunning, match="already running"):
            devstate.acquire_lock(tmp_path / "dev.lock")
    finally:
        lock.close()
    devstate.acquire_lock(tmp_path / "dev.lock").close()  # free again once released


def test_credentials_are_stable_and_private(tmp_path: Path) -> None:
    path = tmp_path / "credentials.json"
    first = devstate.load_credentials(path)
    assert first.api_key.startswith("pw_test_")
    assert first.admin_tokens_env == f"admin:{first.admin_token}"
    assert devstate.load_credentials(path) == first
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_corrupt_credentials_are_regenerated(tmp_path: Path) -> None:
    path = tmp_path / "credentials.json"
    path.write_text("{not json")
    creds = devstate.load_credentials(path)
    assert devstate.load_credentials(path) == creds
