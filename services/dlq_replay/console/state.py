"""What the browser routes share in one admin process."""

from __future__ import annotations

from dataclasses import dataclass

from aiohttp import web

from services.dlq_replay.console.lag import LagSampler


@dataclass
class ConsoleState:
    """The lag sampler behind the overview chart and the console session lifetime."""

    lag: LagSampler
    session_lifetime_s: int


CONSOLE: web.AppKey[ConsoleState] = web.AppKey("console_state", ConsoleState)
