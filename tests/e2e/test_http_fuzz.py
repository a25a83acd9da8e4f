"""Hypothesis fuzzing of the HTTP layer of real ingest and admin processes.

Random methods, paths, header sets, Authorization bytes and bodies, sent over raw sockets,
must never produce a 5xx, an answer outside the contract's error format, or a traceback or
error line in the service's log. Examples are bounded (300 per service, derandomized).
"""

from __future__ import annotations

from collections.abc import Iterator

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from deploy.embedded.services import ServiceName, ServiceProcess, start_service
from tests.conftest import TEST_ADMIN_TOKEN, TEST_API_KEY, ServiceEnvFactory
from tests.support.raw_http import RawResponse, exchange_sync

INGEST_PATHS = ["/v1/events", "/v1/events/batch", "/v1/endpoints", "/v1/endpoints/ep_x",
                "/v1/endpoints/ep_01HZZZZZZZZZZZZZZZZZZZZZZZ/rotate-secret",
                "/v1/events/evt_01HZZZZZZZZZZZZZZZZZZZZZZZ", "/v1/deliveries/dlv_x/attempts",
                "/v1/events?limit=0", "/v1/events?cursor=%FF%00", "/healthz", "/readyz",
                "/metrics", "/", "/%2e%2e/%00", "/v1/\u00e9v\u00e9nements"]
ADMIN_PATHS = ["/admin/v1/dead-letters", "/admin/v1/replays", "/admin/v1/audit-log",
               "/admin/v1/events/evt_x", "/admin/v1/events/evt_x/replay",
               "/admin/v1/replays/rpl_x/cancel", "/admin/v1/dead-letters?limit=abc", "/healthz"]
# Content-Length and Transfer-Encoding are framed by the test (a fuzzed value would make the
# server wait for a body that never comes); Host is always sent once.
FRAMING = {b"content-length", b"transfer-encoding", b"host"}

token_chars = st.sampled_from(list(b"!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCXYZ"))
header_names = st.one_of(
    st.sampled_from([b"Content-Type", b"Idempotency-Key", b"Accept", b"Cookie", b"X-Forwarded-For",
                     b"Connection", b"Expect", b"Content-Encoding", b"Origin"]),
    st.lists(token_chars, min_size=1, max_size=24).map(bytes),
).filter(lambda name: name.lower() not in FRAMING)
header_values = st.binary(max_size=300).map(
    lambda value: value.replace(b"\r", b"").replace(b"\n", b""))


def auth_values(secret: str) -> st.SearchStrategy[bytes]:
    raw = header_values
    return st.one_of(
        raw,
        raw.map(lambda junk: b"Bearer " + junk),
        raw.map(lambda junk: f"Bearer {secret}".encode() + junk),
        st.just(f"Bearer {secret}".encode()),
    )


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.floats()
    | st.text(max_size=40),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=12), inner,
                                                                 max_size=5),
    max_leaves=30)
event_like = st.fixed_dictionaries(
    {"account_id": st.text(max_size=70), "type": st.text(max_size=20), "data": json_values},
    optional={"ordering_key": json_values, "idempotency_key": json_values,
              "url": st.text(max_size=80), "events": st.lists(json_values, max_size=3)})
bodies = st.one_of(st.binary(max_size=2048), json_values.map(orjson.dumps),
                   event_like.map(orjson.dumps))


def build(method: str, path: str, headers: list[tuple[bytes, bytes]], auth: bytes | None,
          body: bytes) -> bytes:
    target = path.encode("utf-8")
    lines = [method.encode() + b" " + target + b" HTTP/1.1", b"Host: 127.0.0.1"]
    lines += [name + b": " + value for name, value in headers]
    if auth is not None:
        lines.append(b"Authorization: " + auth)
    lines.append(f"Content-Length: {len(body)}".encode())
    lines.append(b"Connection: close")
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


def check(response: RawResponse, method: str) -> None:
    assert response.status < 500, response
    if method != "HEAD" and response.status >= 400 and response.headers.get(
            "content-type", "").startswith("application/json"):
        error = orjson.loads(response.body)["error"]
        assert set(error) == {"type", "message", "param"}, error
    assert "server" not in response.headers


def start(name: ServiceName, env: dict[str, str], tmp: pytest.TempPathFactory) -> ServiceProcess:
    service = start_service(name, env, tmp.mktemp("fuzz") / f"{name}.log")
    service.wait_healthy(timeout_s=60.0)
    return service


@pytest.fixture(scope="module")
def ingest(service_env: ServiceEnvFactory,
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceProcess]:
    service = start("ingest", service_env(), tmp_path_factory)
    try:
        yield service
    finally:
        service.stop()


@pytest.fixture(scope="module")
def admin(service_env: ServiceEnvFactory,
          tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceProcess]:
    service = start("dlq_replay", service_env(), tmp_path_factory)
    try:
        yield service
    finally:
        service.stop()


def port_of(service: ServiceProcess) -> int:
    return int(service.base_url.rsplit(":", 1)[1])


def assert_clean_log(service: ServiceProcess) -> None:
    log = service.log_path.read_text(errors="replace")
    assert "Traceback" not in log, log[-3000:]
    assert '"level":"error"' not in log, log[-3000:]


FUZZ = settings(max_examples=300, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.function_scoped_fixture,
                                       HealthCheck.too_slow])


@FUZZ
@given(method=st.sampled_from(["GET", "POST", "PATCH", "DELETE", "PUT", "OPTIONS", "HEAD"]),
       path=st.sampled_from(INGEST_PATHS),
       headers=st.lists(st.tuples(header_names, header_values), max_size=12),
       auth=st.none() | auth_values(TEST_API_KEY),
       body=bodies)
def test_ingest_never_answers_5xx(ingest: ServiceProcess, method: str, path: str,
                                  headers: list[tuple[bytes, bytes]], auth: bytes | None,
                                  body: bytes) -> None:
    check(exchange_sync(port_of(ingest), build(method, path, headers, auth, body)), method)


def test_ingest_log_stayed_clean(ingest: ServiceProcess) -> None:
    assert_clean_log(ingest)


@FUZZ
@given(method=st.sampled_from(["GET", "POST", "PATCH", "DELETE"]),
       path=st.sampled_from(ADMIN_PATHS),
       headers=st.lists(st.tuples(header_names, header_values), max_size=12),
       auth=st.none() | auth_values(TEST_ADMIN_TOKEN),
       body=bodies)
def test_admin_never_answers_5xx(admin: ServiceProcess, method: str, path: str,
                                 headers: list[tuple[bytes, bytes]], auth: bytes | None,
                                 body: bytes) -> None:
    check(exchange_sync(port_of(admin), build(method, path, headers, auth, body)), method)


def test_admin_log_stayed_clean(admin: ServiceProcess) -> None:
    assert_clean_log(admin)
