"""shared.core.company.CompanyForecast: wait for company only when some is expected."""

from __future__ import annotations

from shared.core.company import CompanyForecast


def test_many_sources_at_a_high_enough_rate_wait() -> None:
    forecast = CompanyForecast(wait_s=0.01)    # needs 100 submissions a second
    answers = [forecast.arrive(5.0 + i / 200, source=i % 7) for i in range(200)]
    assert not answers[0]                       # nothing counted yet
    assert all(answers[100:])                   # 200 a second from 7 sources


def test_too_few_submissions_do_not_wait() -> None:
    forecast = CompanyForecast(wait_s=0.01)
    answers = [forecast.arrive(5.0 + i / 50, source=i % 7) for i in range(100)]
    assert not any(answers)                     # 50 a second x 10 ms < 1


def test_one_source_alone_never_waits_however_fast() -> None:
    forecast = CompanyForecast(wait_s=0.01)
    answers = [forecast.arrive(5.0 + i / 1000, source="conn-1") for i in range(2000)]
    assert not any(answers)                     # one request at a time: no company to wait for


def test_a_second_source_counts_for_a_second_after_it_was_seen() -> None:
    forecast = CompanyForecast(wait_s=0.01)
    for i in range(300):
        forecast.arrive(5.0 + i / 1000, source="conn-1")
    assert forecast.arrive(5.3, source="conn-2")
    assert forecast.arrive(5.9, source="conn-2")        # 0.6 s after the switch
    assert forecast.arrive(6.29, source="conn-2")
    assert not forecast.arrive(6.4, source="conn-2")    # the last switch was 1.1 s ago


def test_no_wait_configured_never_waits() -> None:
    forecast = CompanyForecast(wait_s=0)
    assert not any(forecast.arrive(5.0 + i / 1000, source=i % 3) for i in range(2000))
