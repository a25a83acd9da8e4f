"""What the browser routes share in one admin process."""

from __future__ import annotations

from dataclasses import dataclass, field

from aiohttp import web

from services.dlq_replay.console.lag import LagSampler
from services.dlq_replay.console.overview import OverviewCache
from services.dlq_replay.console.signin_throttle import LoginThrottle


@dataclass
class ConsoleState:
    """The lag sampler behind the overview chart, the console session lifetime, the failed
    sign-in throttle and the overview cache."""

    lag: LagSampler
    session_lifetime_s: int
    throttle: LoginThrottle = field(default_factory=LoginThrottle)
    overview: OverviewCache = field(default_factory=OverviewCache)


CONSOLE: web.AppKey[ConsoleState] = web.AppKey("console_state", ConsoleState)
