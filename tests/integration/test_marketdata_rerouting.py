"""Bots running through their pool's market-data proxy when another process takes its port,
with real supervisord and real `freqtrade trade --dry-run` bots on the exchange emulator.

The proxy is stopped (as between a crash and supervisord's next try) and this test, the
stranger, listens on its port and counts the connections it gets: the running bots would
send it their public requests. The controller restarts each of them once, direct (the event
`bot_restart`, reason `market_data_port_taken`, not counted by the restart policy): the
stranger hears nothing more from them, the emulator serves them, and they analyse newer
candles. When the proxy has its port back, the moved bots are not restarted again.

Fixed ports 32200-32399 only: the proxy at 32210, bots from 32220.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from tests.e2e.trading import SUITE_MARKETS, wait_trading
from tests.exchange import EmulatorProcess, pairs
from tests.integration.test_marketdata import (
    shared_client_requests,
    shared_trading_bot,
    trading_pool,
)
from tests.support import ADMIN_TOKEN as ADMIN
from tests.support import (
    ControllerHarness,
    pid_alive,
    supervisor_processes,
    supervisor_rpc,
    wait_for,
)

pytestmark = pytest.mark.integration
BOTS = ["mdr-1", "mdr-2"]
PROXY_PORT = 32210


class Stranger:
    """A process (this test) listening on the proxy's port: it counts the connections it
    gets and answers none of them."""

    def __init__(self) -> None:
        self.connections = 0
        self.server: asyncio.Server | None = None

    async def _heard(self, _reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        writer.close()

    async def listen(self) -> bool:
        try:
            self.server = await asyncio.start_server(self._heard, "127.0.0.1", PROXY_PORT)
        except OSError:
            return False  # the port is still being given up
        return True

    def close(self) -> None:
        if self.server is not None:
            self.server.close()


@pytest.fixture
async def stranger() -> AsyncIterator[Stranger]:
    s = Stranger()
    yield s
    s.close()


def routed(h: ControllerHarness, bot: str) -> bool:
    """Whether the bot's config in its pool names the pool's proxy (else its exchange)."""
    written = (h.pool_dir("pool-1") / "bots" / bot / "config.json").read_text()
    return f"http://127.0.0.1:{PROXY_PORT}/e/binance/" in written


async def pool_status(h: ControllerHarness) -> dict[str, Any]:
    status, body = await h.call("GET", "/api/pool/status")
    assert status == 200, body
    [pool] = body["pools"]
    return pool["marketData"] or {}


async def events(h: ControllerHarness, kind: str) -> list[dict[str, Any]]:
    status, body = await h.call("GET", "/api/pool/events/history?limit=1000")
    assert status == 200, body
    return [e for e in body["events"] if e["type"] == kind]


async def newest_candle_ms(h: ControllerHarness, bot: str) -> int:
    status, candles = await h.call(
        "GET", f"/api/bots/{bot}/pair_candles?pair={pairs(1)[0]}&timeframe=1m"
    )
    return (candles.get("data_stop_ts") or 0) if status == 200 and candles else 0


def bot_pids(h: ControllerHarness) -> dict[str, int]:
    programs = supervisor_processes(h.pool_dir("pool-1"))
    return {b: programs[f"bot-{b}"]["pid"] for b in BOTS}


async def test_running_bots_leave_a_taken_port_for_their_exchange(
    harness_factory, stranger: Stranger
) -> None:
    with EmulatorProcess.start(markets=SUITE_MARKETS) as exchange:
        h = await harness_factory(**trading_pool(len(BOTS), 32220, PROXY_PORT))
        for bot in BOTS:
            await h.provision(**shared_trading_bot(exchange.url, bot, n_pairs=2))
        await wait_trading(h, ADMIN, BOTS)
        assert all(routed(h, b) for b in BOTS)
        await wait_for(lambda: _holder_is(h, "proxy"))
        live = h.controller.pools.registry.live["pool-1"]
        await wait_for(lambda: (live.market_data and live.market_data.routed) == BOTS)
        before = bot_pids(h)

        # The proxy is gone, and a stranger has its port: the running bots would talk to it
        # (how many times they do before they are moved depends on their loops' timing).
        supervisor_rpc(h.pool_dir("pool-1"), "stopProcess", "marketdata")
        await wait_for(stranger.listen, 10, step=0.05)

        # Each is restarted once, direct; the stranger's port goes to no new bot process.
        await wait_for(lambda: _holder_is(h, "stranger"))
        await wait_for(lambda: _restarted(h, before), 180, step=1)
        restarts = await events(h, "bot_restart")
        assert sorted((e["instanceId"], e["reason"]) for e in restarts) == [
            (b, "market_data_port_taken") for b in BOTS
        ], restarts
        assert (await events(h, "market_data_port_taken")) != []
        for bot in BOTS:
            assert not routed(h, bot) and not pid_alive(before[bot])  # never two copies
            assert h.controller.pools.registry.bots[bot].restarts.attempts == 0  # no crash
        heard, served = stranger.connections, shared_client_requests(exchange)
        print(f"\nthe stranger heard {heard} connections before the bots were moved")
        # Their first candles, once their API answers (the stranger answers nothing) ...
        candles = {b: await wait_for(lambda b=b: newest_candle_ms(h, b), 120) for b in BOTS}

        # ... and the next: they trade direct, fed by the emulator, and the stranger hears
        # nothing more.
        async def fed_again() -> bool:
            return all([await newest_candle_ms(h, b) > candles[b] for b in BOTS])

        await wait_for(fed_again, 150, step=2)
        assert stranger.connections == heard
        assert shared_client_requests(exchange) > served
        await wait_for(lambda: (live.market_data and live.market_data.routed) == [])
        await wait_trading(h, ADMIN, BOTS)

        # The stranger gone, the proxy holds its port again: the moved bots are not
        # restarted for it (they go back through it at their next start).
        moved = bot_pids(h)
        stranger.close()
        supervisor_rpc(h.pool_dir("pool-1"), "startProcess", "marketdata")
        await wait_for(lambda: _holder_is(h, "proxy"), 30)
        await wait_for(lambda: all(routed(h, b) for b in BOTS))
        await wait_for(lambda: _has_event(h, "market_data_port_recovered"))
        assert bot_pids(h) == moved
        assert len(await events(h, "bot_restart")) == len(BOTS)


async def _holder_is(h: ControllerHarness, holder: str) -> bool:
    return (await pool_status(h)).get("portHolder") == holder


async def _has_event(h: ControllerHarness, kind: str) -> bool:
    return bool(await events(h, kind))


async def _restarted(h: ControllerHarness, before: dict[str, int]) -> bool:
    programs = supervisor_processes(h.pool_dir("pool-1"))
    return all(
        programs[f"bot-{b}"]["statename"] == "RUNNING" and programs[f"bot-{b}"]["pid"] != pid
        for b, pid in before.items()
    )
