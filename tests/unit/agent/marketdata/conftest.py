"""The proxy under test, in-process on an ephemeral port, before the real exchange emulator.

Both read one clock the tests move on: lifetimes, budgets and the emulator's candles and
minutes follow it, so no test sleeps for time to pass.
"""

from __future__ import annotations

import io
import json
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import aiohttp
import ccxt.async_support as ccxt
import pytest
import structlog
from aiohttp import web

from agent.marketdata.address import proxy_base
from agent.marketdata.proxy import MarketDataProxy, ProxyConfig
from agent.marketdata.routing import route_config
from agent.marketdata.table import load_tables
from common.logging import setup_logging
from tests.exchange import ExchangeEmulator, Settings, exchange_config, pairs

START = 1_795_000_040.0  # 20 s into a minute (wall-clock seconds)
MARKETS = 50


class Clock:
    """Wall-clock seconds for the proxy, milliseconds for the emulator; moved on by tests
    (or, for signed requests, whose timestamps ccxt takes from the wall clock, following it)."""

    def __init__(self, now: float = START) -> None:
        self.now: float | None = now

    def __call__(self) -> float:
        return time.time() if self.now is None else self.now

    def follow_wall_clock(self) -> None:
        self.now = None

    def ms(self) -> int:
        return int(self() * 1000)

    def advance(self, seconds: float) -> None:
        assert self.now is not None, "a clock that follows the wall clock is not moved"
        self.now += seconds


class ProxyUnderTest:
    def __init__(self, proxy: MarketDataProxy, port: int, http: aiohttp.ClientSession) -> None:
        self.proxy, self.port, self.http = proxy, port, http

    def base(self, upstream: str, exchange: str = "binance") -> str:
        return proxy_base(self.port, exchange, upstream)

    async def get(self, base: str, path: str, **kwargs: Any) -> tuple[int, Any, dict[str, str]]:
        async with self.http.get(base + path, **kwargs) as r:
            body = await r.read()
            return r.status, json.loads(body) if body else None, dict(r.headers)

    def counters(self) -> dict[str, Any]:
        [upstream] = self.proxy.snapshot()["upstreams"]
        return upstream

    def ccxt_bot(
        self, exchange_url: str, private_too: bool = False, **options: Any
    ) -> ccxt.binance:
        """A real ccxt binance with its URLs as the agent routes them through this proxy
        (the public one); `private_too`: its private URL through the proxy as well."""
        config = exchange_config(exchange_url, pairs(3))
        routed = route_config(config, self.port, load_tables())
        assert routed is not None
        ex = routed["exchange"]
        urls = dict(ex["ccxt_config"]["urls"]["api"])
        if private_too:
            urls["private"] = self.base(urls["private"])
        return ccxt.binance({
            "urls": {"api": urls}, "options": ex["ccxt_config"]["options"],
            "enableRateLimit": False, **options,
        })  # fmt: skip


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def start_emulator(clock: Clock) -> AsyncIterator[Callable[..., Awaitable[ExchangeEmulator]]]:
    """Emulators with settings of a test's own (ask for this before start_proxy: the proxy
    then closes its connections before the emulator stops, which would wait for them)."""
    started: list[ExchangeEmulator] = []

    async def start(**settings: Any) -> ExchangeEmulator:
        emu = ExchangeEmulator(Settings(**{"markets": MARKETS, **settings}), clock=clock.ms)
        await emu.start()
        started.append(emu)
        return emu

    yield start
    for emu in started:
        await emu.stop()


@pytest.fixture
async def emulator(start_emulator: Callable[..., Awaitable[ExchangeEmulator]]) -> ExchangeEmulator:
    return await start_emulator()


@pytest.fixture
async def start_proxy(clock: Clock) -> AsyncIterator[Callable[..., Awaitable[ProxyUnderTest]]]:
    runners: list[web.AppRunner] = []
    http = aiohttp.ClientSession()

    async def start(config: ProxyConfig | None = None) -> ProxyUnderTest:
        proxy = MarketDataProxy(load_tables(), config or ProxyConfig(), clock=clock)
        runner = web.AppRunner(proxy.app(), access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        runners.append(runner)
        return ProxyUnderTest(proxy, runner.addresses[0][1], http)

    yield start
    await http.close()
    for runner in runners:
        await runner.cleanup()


async def emulator_stats(emu: ExchangeEmulator) -> dict[str, Any]:
    async with aiohttp.ClientSession() as http, http.get(emu.url + "/_emulator/stats") as r:
        return await r.json()


async def upstream_requests(emu: ExchangeEmulator, endpoint: str | None = None) -> int:
    stats = await emulator_stats(emu)
    if endpoint is None:
        return stats["totals"]["requests"]
    return stats["endpoints"].get(f"GET /api/v3/{endpoint}", {}).get("requests", 0)


async def add_fault(emu: ExchangeEmulator, **fault: Any) -> None:
    async with (
        aiohttp.ClientSession() as http,
        http.post(emu.url + "/_emulator/faults", json=fault) as r,
    ):
        assert r.status == 200, await r.text()


@pytest.fixture
def log_output(monkeypatch: pytest.MonkeyPatch) -> Iterator[io.StringIO]:
    """Everything the proxy logs, at debug level, rendered as in production (JSON lines)."""
    stream = io.StringIO()
    monkeypatch.setattr(sys, "stderr", stream)
    setup_logging("debug", json=True)
    structlog.configure(cache_logger_on_first_use=False)
    try:
        yield stream
    finally:
        structlog.reset_defaults()
