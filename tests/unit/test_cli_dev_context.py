"""The CLI finds a running dev stack by itself, takes its options before or after the
subcommand, and prints its version (no processes: the admin API is a loopback stub)."""

from __future__ import annotations

import json
import shlex
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from cli.dev_context import find_dev_dir, load_dev_context, remove_urls, write_urls
from cli.main import main
from shared.core.version import POSTWIRE_VERSION


def make_dev_dir(root: Path, admin_url: str = "http://127.0.0.1:1") -> Path:
    directory = root / ".postwire" / "dev"
    directory.mkdir(parents=True)
    (directory / "credentials.json").write_text(json.dumps(
        {"api_key": "pw_test_key 'quoted'", "admin_token": "dev-admin-token"}))
    write_urls(directory, {"ingest": "http://127.0.0.1:18080", "dlq_replay": admin_url})
    return directory


def test_the_nearest_dev_dir_is_found_from_below(tmp_path: Path) -> None:
    directory = make_dev_dir(tmp_path)
    nested = tmp_path / "services" / "deep"
    nested.mkdir(parents=True)
    assert find_dev_dir(nested) == directory.resolve()
    context = load_dev_context(nested)
    assert context is not None and context.admin_token == "dev-admin-token"
    assert context.ingest_url == "http://127.0.0.1:18080"
    remove_urls(directory)
    stopped = load_dev_context(nested)
    assert stopped is not None and stopped.admin_url is None
    assert find_dev_dir(tmp_path.parent / "elsewhere-that-has-none") is None


def test_dev_env_prints_eval_safe_exports(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    make_dev_dir(tmp_path)
    monkeypatch.chdir(tmp_path)
    assert main(["dev", "env"]) == 0
    lines = capsys.readouterr().out.splitlines()
    exported = dict(shlex.split(line.removeprefix("export "))[0].split("=", 1) for line in lines)
    assert exported == {"POSTWIRE_API_KEY": "pw_test_key 'quoted'",
                        "POSTWIRE_INGEST_URL": "http://127.0.0.1:18080",
                        "POSTWIRE_ADMIN_URL": "http://127.0.0.1:1",
                        "POSTWIRE_ADMIN_TOKEN": "dev-admin-token"}


def test_dev_env_without_a_running_stack_fails_with_one_line(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["dev", "env"]) == 1
    captured = capsys.readouterr()
    assert captured.out == "" and len(captured.err.strip().splitlines()) == 1


@pytest.fixture
def admin_stub() -> Iterator[tuple[str, list[dict[str, str]]]]:
    seen: list[dict[str, str]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            seen.append({"path": self.path, "auth": self.headers.get("Authorization", "")})
            raw = json.dumps({"data": [], "has_more": False, "next_cursor": None}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(raw)))
            self.end_headers()
            self.wfile.write(raw)

        def log_message(self, *args: object) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", seen
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


def test_operator_commands_use_the_dev_stack_and_options_anywhere(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
        admin_stub: tuple[str, list[dict[str, str]]]) -> None:
    url, seen = admin_stub
    make_dev_dir(tmp_path, admin_url=url)
    monkeypatch.chdir(tmp_path)
    for name in ("POSTWIRE_ADMIN_URL", "POSTWIRE_ADMIN_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    assert main(["dlq", "list"]) == 0  # URL and token found under .postwire/dev
    assert seen[-1]["auth"] == "Bearer dev-admin-token"
    assert "no dead letters" in capsys.readouterr().out
    assert main(["--json", "--token", "explicit-token", "dlq", "list"]) == 0
    assert seen[-1]["auth"] == "Bearer explicit-token"
    assert json.loads(capsys.readouterr().out) == []
    assert main(["dlq", "list", "--json", "--token", "after-token", "--url", url]) == 0
    assert seen[-1]["auth"] == "Bearer after-token"
    monkeypatch.setenv("POSTWIRE_ADMIN_TOKEN", "env-token")
    assert main(["--url", url, "audit"]) == 0
    assert seen[-1]["auth"] == "Bearer env-token" and seen[-1]["path"].startswith("/admin/v1/audit")
    assert len(seen) == 4


def test_no_token_anywhere_is_a_usage_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("POSTWIRE_ADMIN_TOKEN", raising=False)
    assert main(["dlq", "list"]) == 2
    assert "no admin token" in capsys.readouterr().err


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["--version"])
    assert exited.value.code == 0
    assert capsys.readouterr().out.strip() == f"postwire {POSTWIRE_VERSION}"
