"""The aiohttp application and ExchangeEmulator, which serves it on a TCP port.

Every route also answers under /c/<client>/..., so the counters can tell bots apart; without
the prefix the client is "-". Each Binance route goes through the same steps: faults, the
weight budget of the remote address, the handler, the counters; every answer (even a 404)
carries X-MBX-USED-WEIGHT-1M.
A request whose client gave up while it hung (a `timeout` fault) is counted with status 499.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from dataclasses import replace

from aiohttp import web

from tests.exchange import private, public
from tests.exchange.errors import BinanceError, injected
from tests.exchange.faults import Fault
from tests.exchange.public import Endpoint, compact
from tests.exchange.state import Settings, State

CLIENT_PREFIX = "/c/{client:[A-Za-z0-9_-]{1,64}}"
STATE_KEY = web.AppKey("state", State)
CLIENT_GAVE_UP = 499  # counted (as nginx logs it) when a client left a hanging request


def _json(value: object, status: int = 200) -> web.Response:
    return web.Response(
        status=status,
        body=value if isinstance(value, bytes) else compact(value),
        content_type="application/json",
        charset="UTF-8",
    )


async def _apply(fault: Fault, state: State, request: web.Request) -> None:
    """Delay, hang or fail the request as the fault says (returns to let it through)."""
    if fault.latency_ms:
        await asyncio.sleep(fault.latency_ms / 1000)
    if fault.timeout:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + state.settings.hang_max_s
        while (
            request.transport is not None
            and not request.transport.is_closing()
            and not state.stopping.is_set()
            and loop.time() < deadline
        ):
            await asyncio.sleep(0.05)
        if loop.time() < deadline:  # the client gave up (or the emulator stops): nobody reads
            raise BinanceError(CLIENT_GAVE_UP, -1007, "The client closed the request.")
        raise BinanceError(
            504,
            -1007,
            "Timeout waiting for response from backend server. "
            "Send status unknown; execution status unknown.",
        )
    if fault.status is not None:
        raise injected(fault.status)


def binance_route(state: State, endpoint: Endpoint):
    name = f"{endpoint.method} {endpoint.path}"

    async def handle(request: web.Request) -> web.Response:
        client = request.match_info.get("client", "-")
        address = request.remote or "-"
        charged = 0
        try:
            fault = state.faults.fire(endpoint.path, client)
            if fault is not None:
                await _apply(fault, state, request)
            weight = endpoint.weight(request.query)
            state.budget.admit(address, weight, state.now_ms())
            charged = weight
            response = _json(endpoint.handler(state, request))
        except BinanceError as e:
            response = e.response()
        except asyncio.CancelledError:  # aiohttp cancelled the handler: the client left
            state.accounting.record(client, name, charged, CLIENT_GAVE_UP)
            raise
        state.accounting.record(client, name, charged, response.status)
        return response

    return handle


async def stats(request: web.Request) -> web.Response:
    state = request.app[STATE_KEY]
    now = state.now_ms()
    snapshot = state.accounting.snapshot(now)
    snapshot["addresses"] = state.budget.snapshot(now)
    snapshot["faults"] = len(state.faults.faults)
    return _json(snapshot)


async def reset(request: web.Request) -> web.Response:
    """Clear every counter, the weight budgets and the bans (not the faults)."""
    state = request.app[STATE_KEY]
    state.accounting.reset(state.now_ms())
    state.budget.reset()
    return _json({"ok": True})


async def faults(request: web.Request) -> web.Response:
    state = request.app[STATE_KEY]
    if request.method == "POST":
        try:
            added = state.faults.add(await request.json())
        except (ValueError, TypeError, json.JSONDecodeError) as e:
            return _json({"error": str(e)}, status=400)
        return _json({"added": [f.id for f in added], "faults": state.faults.listing()})
    if request.method == "DELETE":
        state.faults.clear()
    return _json({"faults": state.faults.listing()})


async def _used_weight_header(request: web.Request, response: web.StreamResponse) -> None:
    """X-MBX-USED-WEIGHT-1M on every answer: the remote address's weight this minute."""
    state = request.app[STATE_KEY]
    used = state.budget.used(request.remote or "-", state.now_ms())
    response.headers["X-MBX-USED-WEIGHT-1M"] = str(used)


def build_app(state: State) -> web.Application:
    app = web.Application()
    app[STATE_KEY] = state
    app.on_response_prepare.append(_used_weight_header)
    for prefix in ("", CLIENT_PREFIX):
        for endpoint in public.ENDPOINTS + private.ENDPOINTS:
            app.router.add_route(
                endpoint.method, prefix + endpoint.path, binance_route(state, endpoint)
            )
        app.router.add_get(prefix + "/_emulator/stats", stats)
        app.router.add_post(prefix + "/_emulator/reset", reset)
        for method in ("GET", "POST", "DELETE"):
            app.router.add_route(method, prefix + "/_emulator/faults", faults)
    return app


class ExchangeEmulator:
    """An offline Binance spot exchange on a TCP port:

    async with ExchangeEmulator(Settings(markets=2000)) as emu:
        config = exchange_config(emu.url, pairs(20))
    """

    def __init__(
        self,
        settings: Settings | None = None,
        clock: Callable[[], int] | None = None,
        **overrides: object,
    ) -> None:
        """`clock`: the time in ms (default: the wall clock), for tests that move time on."""
        self.settings = replace(settings or Settings(), **overrides)
        self.state = State(self.settings, clock)
        self.app = build_app(self.state)
        self._runner: web.AppRunner | None = None
        self.port: int | None = None

    @property
    def url(self) -> str:
        if self.port is None:
            raise RuntimeError("the emulator is not started")
        host = self.settings.host
        return f"http://{'[' + host + ']' if ':' in host else host}:{self.port}"

    async def start(self) -> str:
        self.state.stopping.clear()
        self._runner = web.AppRunner(self.app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.settings.host, self.settings.port)
        await site.start()
        self.port = self._runner.addresses[0][1]
        return self.url

    async def stop(self) -> None:
        self.state.stopping.set()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> ExchangeEmulator:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()
