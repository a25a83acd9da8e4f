"""The shared entry point of the three services: invalid settings exit 2 with one line."""

from __future__ import annotations

import importlib
from collections.abc import Mapping

import pytest
from aiohttp import web

from shared.core.errors import ConfigError
from shared.service_main import ServiceSettings, log_level_from, serve_from_environment


def _refuse(env: Mapping[str, str]) -> ServiceSettings:
    raise ConfigError(f"POSTWIRE_PORT must be a number, got {env['POSTWIRE_PORT']!r}")


async def _never(settings: ServiceSettings) -> web.Application:
    raise AssertionError("no app is built when the settings are invalid")


def test_invalid_settings_exit_2_with_one_line_naming_the_service(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("POSTWIRE_PORT", "eighty")
    with pytest.raises(SystemExit) as exited:
        serve_from_environment("ingest", _refuse, _never)
    assert exited.value.code == 2
    assert capsys.readouterr().err == (
        "postwire ingest: POSTWIRE_PORT must be a number, got 'eighty'\n")


@pytest.mark.parametrize(("value", "level"), [
    (None, "INFO"), ("debug", "DEBUG"), ("Warning", "WARNING"), ("ERROR", "ERROR"),
    ("verbose", "INFO"), ("", "INFO"),
])
def test_log_level_is_a_known_level_or_info(value: str | None, level: str) -> None:
    env = {} if value is None else {"POSTWIRE_LOG_LEVEL": value}
    assert log_level_from(env) == level


@pytest.mark.parametrize(("module", "name"), [
    ("services.ingest.__main__", "ingest"), ("services.dispatcher.__main__", "dispatcher"),
    ("services.dlq_replay.__main__", "admin"),
])
def test_each_service_names_itself_in_its_startup_error(
        module: str, name: str, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.delenv("POSTWIRE_DATABASE_URL", raising=False)
    main = importlib.import_module(module).main
    with pytest.raises(SystemExit) as exited:
        main()
    assert exited.value.code == 2
    assert capsys.readouterr().err == (
        f"postwire {name}: POSTWIRE_DATABASE_URL is required but not set\n")
