"""Pure parts of the console: chart geometry, form parsing, portal-session bodies, which
paths are browser paths, and lag bucketing."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from services.dlq_replay.console import forms
from services.dlq_replay.console.charts import (
    HEIGHT,
    PAD_BOTTOM,
    PAD_TOP,
    bar_chart,
    format_value,
    line_chart,
    nice_ceiling,
)
from services.dlq_replay.console.guard import safe_next, web_kind
from services.dlq_replay.console.lag import LagSample
from services.dlq_replay.console.overview import MINUTES, lag_buckets
from services.dlq_replay.console.portal_api import parse_portal_session
from services.dlq_replay.console.queries import cut_page
from services.dlq_replay.console.signin_throttle import LoginThrottle
from shared.core.errors import InvalidRequest


@pytest.mark.parametrize(("value", "expected"), [
    (0, 1.0), (-3, 1.0), (0.7, 1.0), (1, 1.0), (1.2, 2.0), (2.2, 2.5), (3, 5.0), (7, 10.0),
    (12, 20.0), (240, 250.0), (999, 1000.0), (0.013, 0.02)])
def test_nice_ceiling(value: float, expected: float) -> None:
    assert nice_ceiling(value) == pytest.approx(expected)


def test_format_value() -> None:
    assert format_value(None, "ms") == "-"
    assert format_value(0.992, "%") == "99.2%"
    assert format_value(12.5, "/s") == "12.50/s"
    assert format_value(230, "ms") == "230 ms"
    assert format_value(3.0, "") == "3"


def test_line_chart_splits_at_gaps_and_marks_lone_points() -> None:
    chart = line_chart("t", "ms", [("p50", "s-p50", [1.0, 2.0, None, 4.0, None, None])],
                       "-60 min", "now")
    [series] = chart.series
    assert len(series.segments) == 1 and len(series.segments[0].split(" ")) == 2
    assert len(series.dots) == 1
    assert chart.y_top == "5 ms" and series.latest == "4 ms" and not chart.empty
    ys = [float(p.split(",")[1]) for p in series.segments[0].split(" ")]
    assert all(PAD_TOP <= y <= HEIGHT - PAD_BOTTOM for y in ys)
    assert ys[0] > ys[1]  # a higher value is drawn higher up


def test_line_chart_without_data_is_empty_and_clamps_to_a_fixed_top() -> None:
    assert line_chart("t", "", [("x", "c", [None, None])], "a", "b").empty
    chart = line_chart("t", "%", [("ok", "c", [1.5, 0.5])], "a", "b", top=1.0)
    first = chart.series[0].segments[0].split(" ")[0]
    assert float(first.split(",")[1]) == PAD_TOP  # 150% is drawn at the 100% line


def test_bar_chart_heights_are_proportional() -> None:
    chart = bar_chart("dead", "", "n", "c", [0.0, 5.0, 10.0], "-24 h", "now")
    heights = [bar[3] for bar in chart.series[0].bars]
    assert heights[0] == 0 and heights[2] == pytest.approx(2 * heights[1])
    assert chart.series[0].latest == "15" and not chart.empty
    assert bar_chart("dead", "", "n", "c", [0.0] * 4, "a", "b").empty


def test_form_fields() -> None:
    source = {"a": "  x ", "e": "", "n": "12", "bad": "1x", "t": "2026-11-22T10:00",
              "z": "2026-11-22T10:00:00Z"}
    assert forms.text(source, "a") == "x"
    assert forms.text(source, "e") is None and forms.text(source, "missing") is None
    assert forms.integer(source, "n", 5, 1, 20) == 12
    assert forms.integer(source, "missing", 5, 1, 20) == 5
    expected = datetime(2026, 11, 22, 10, tzinfo=UTC)
    assert forms.timestamp(source, "t") == expected == forms.timestamp(source, "z")
    with pytest.raises(InvalidRequest) as bad:
        forms.integer(source, "bad", 5, 1, 20)
    assert bad.value.param == "bad"
    with pytest.raises(InvalidRequest):
        forms.integer(source, "n", 5, 1, 10)
    with pytest.raises(InvalidRequest):
        forms.required(source, "e")
    with pytest.raises(InvalidRequest):
        forms.text({"a": "xxxx"}, "a", 3)
    with pytest.raises(InvalidRequest):
        forms.timestamp({"t": "yesterday"}, "t")
    assert forms.event_types("invoice.*, payment.succeeded  refund.*") == [
        "invoice.*", "payment.succeeded", "refund.*"]
    assert forms.event_types(None) == []


def test_portal_session_body() -> None:
    assert parse_portal_session({"account_id": "acct_1"}) == ("acct_1", 3600)
    assert parse_portal_session({"account_id": "a", "expires_in_s": 60}) == ("a", 60)
    for body, param in (({}, "account_id"), ({"account_id": "no spaces"}, "account_id"),
                        ({"account_id": "a", "expires_in_s": 59}, "expires_in_s"),
                        ({"account_id": "a", "expires_in_s": 86401}, "expires_in_s"),
                        ({"account_id": "a", "expires_in_s": True}, "expires_in_s"),
                        ({"account_id": "a", "expires_in_s": "60"}, "expires_in_s"),
                        ({"account_id": "a", "x": 1}, "x")):
        with pytest.raises(InvalidRequest) as error:
            parse_portal_session(body)
        assert error.value.param == param


def test_browser_paths() -> None:
    assert web_kind("/console") == "console" and web_kind("/console/events/x") == "console"
    assert web_kind("/portal") == "portal" and web_kind("/portal/start") == "portal"
    for api in ("/admin/v1/dead-letters", "/consoles", "/portals/x", "/healthz", "/"):
        assert web_kind(api) is None


def test_lag_buckets_keep_the_highest_sample_per_minute() -> None:
    first = 1000
    samples = [LagSample(first * 60 + 1, 5), LagSample(first * 60 + 30, 9),
               LagSample((first + 2) * 60, None), LagSample((first + 3) * 60, 0),
               LagSample((first - 1) * 60, 99), LagSample((first + MINUTES) * 60, 99)]
    values = lag_buckets(samples, first)
    assert len(values) == MINUTES
    assert values[:4] == [9.0, None, None, 0.0]
    assert all(v is None for v in values[4:])


def test_login_throttle_counts_failures_per_client_in_a_window() -> None:
    throttle = LoginThrottle(max_failures=3, window_s=60.0)
    for t in (0.0, 1.0, 2.0):
        assert throttle.retry_after_s("a", t) == 0
        throttle.failed("a", t)
    assert throttle.retry_after_s("a", 3.0) == pytest.approx(57.0)
    assert throttle.retry_after_s("b", 3.0) == 0  # another client is not affected
    assert throttle.retry_after_s("a", 60.5) == 0  # the first failure aged out
    throttle.failed("a", 61.0)
    throttle.failed("a", 61.2)
    assert throttle.retry_after_s("a", 61.5) == pytest.approx(0.5)  # 2.0 ages out at 62
    throttle.succeeded("a")
    assert throttle.retry_after_s("a", 61.5) == 0


def test_safe_next_stays_on_console_pages() -> None:
    assert safe_next("/console/events?type=a") == "/console/events?type=a"
    for bad in (None, 3, "", "https://evil.example/", "//evil.example", "/console//evil",
                "/console\\evil", "/console/login", "/console/api/replays", "/admin/v1/x",
                "/console/x\r\nSet-Cookie: a=b", "/console/" + "a" * 3000):
        assert safe_next(bad) == "/console", bad


def test_console_pages_continue_below_the_last_row_shown() -> None:
    rows = [{"id": f"ep_{n}", "n": n} for n in range(4)]
    assert cut_page(rows, 4) == (rows, None)
    assert cut_page(rows[:3], 4) == (rows[:3], None)
    assert cut_page(rows, 3) == (rows[:3], "ep_2")
    assert cut_page([], 3) == ([], None)
