"""A pool's market-data proxy with real supervisord and real `freqtrade trade --dry-run` bots.

Several bots trade the same pairs of the exchange emulator, all with the same exchange URL
in their configs (as users of one exchange have). Through their pool's proxy they cost the
exchange about what one bot does, and they still trade. The proxy killed with kill -9 is
restarted by supervisord; the bots keep running and their data feed recovers.

Fixed ports 24000-24999 only (other suites run beside this one): bots from 24100, the
proxy at 24000.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from tests.e2e.trading import SUITE_MARKETS, wait_trading
from tests.exchange import DEMO_STRATEGY, EmulatorProcess, exchange_config, pairs
from tests.support import ADMIN_TOKEN as ADMIN
from tests.support import ControllerHarness, pid_alive, supervisor_processes, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="module")]
FREQTRADE = shutil.which("freqtrade", path=str(Path(sys.executable).parent))
BOTS = [f"md-{i}" for i in range(1, 5)]
N_PAIRS = 3
PROXY_PORT = 24000
CLIENT = "shared"  # every bot names the same upstream: the emulator counts them together


def shared_trading_bot(url: str, bot: str, n_pairs: int = N_PAIRS) -> dict[str, Any]:
    """A DemoStrategy dry-run bot whose exchange URL is the same for every bot."""
    config = exchange_config(url, pairs(n_pairs), client=CLIENT)
    config.update(max_open_trades=n_pairs, stake_amount=50, dry_run_wallet=1000)
    return {"instanceId": bot, "strategy": DEMO_STRATEGY, "config": config}


def trading_pool(bots: int, bot_port: int, proxy_port: int) -> dict[str, str]:
    """The settings of a pool of `bots` preloaded FreqTrade bots with a market-data proxy
    (for a harness factory)."""
    if FREQTRADE is None:
        pytest.fail("freqtrade is not installed; install the project with its [e2e] extra")
    return dict(
        BOT_COMMAND=f"{FREQTRADE} trade", BOT_LAUNCH="preload",
        MAX_BOTS_PER_CONTAINER=str(bots), POOL_BASE_PORT=str(bot_port),
        MARKET_DATA_PROXY="true", MARKET_DATA_BASE_PORT=str(proxy_port),
        HEARTBEAT_INTERVAL="1000", BOT_PING_TIMEOUT="3000",
    )  # fmt: skip


@pytest.fixture(scope="module")
def exchange() -> Iterator[EmulatorProcess]:
    with EmulatorProcess.start(markets=SUITE_MARKETS) as emulator:
        yield emulator


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def pool(module_harness_factory, exchange) -> ControllerHarness:
    h = await module_harness_factory(**trading_pool(len(BOTS), 24100, PROXY_PORT))
    for bot in BOTS:
        await h.provision(**shared_trading_bot(exchange.url, bot))
    await wait_trading(h, ADMIN, BOTS)
    return h


async def market_data(h: ControllerHarness) -> dict[str, Any]:
    """The pool's proxy, as its agent last reported it in /api/pool/status."""
    status, body = await h.call("GET", "/api/pool/status")
    assert status == 200, body
    [pool] = body["pools"]
    assert pool["marketData"] is not None, pool
    return pool["marketData"]


def shared_client_requests(exchange: EmulatorProcess) -> int:
    """Requests the emulator answered for the bots' shared upstream."""
    per_endpoint = exchange.stats()["clients"].get(CLIENT, {})
    return sum(c["requests"] for c in per_endpoint.values())


async def test_bots_on_the_same_pairs_cost_about_one_bot_and_trade(pool, exchange):
    h = pool
    # The config the controller keeps names the exchange as the user did; the file in the
    # pool routes its public URL through the pool's proxy.
    proxied = f"http://127.0.0.1:{PROXY_PORT}/e/binance/"
    assert proxied not in str(h.controller.pools.registry.bots[BOTS[0]].config)
    written = (h.pool_dir("pool-1") / "bots" / BOTS[0] / "config.json").read_text()
    assert proxied in written

    # A window of two candles (1m): every bot refreshes its candles and prices its trades.
    before = (await market_data(h))["exchanges"]["binance"]
    asked_before = shared_client_requests(exchange)
    await asyncio.sleep(125)
    after = (await market_data(h))["exchanges"]["binance"]
    asked = shared_client_requests(exchange) - asked_before
    demand = after["requests"] - before["requests"]  # what the bots asked the proxy
    one_bot = demand / len(BOTS)
    print(
        f"\n{len(BOTS)} bots, {N_PAIRS} pairs, 125 s: bots asked {demand} "
        f"({one_bot:.0f} per bot), the exchange answered {asked} "
        f"({asked / one_bot:.2f}x one bot's); cache hits {after['cacheHits'] - before['cacheHits']}"
        f", coalesced {after['coalesced'] - before['coalesced']}"
    )
    assert demand > 0 and asked > 0
    assert asked <= 2 * one_bot, (asked, one_bot)
    assert after["refused"] == after["errors"] == 0
    # Still trading: each bot has analysed the emulator's candles and opened trades.
    await wait_trading(h, ADMIN, BOTS)
    for bot in BOTS:
        status, candles = await h.call(
            "GET", f"/api/bots/{bot}/pair_candles?pair={pairs(1)[0]}&timeframe=1m"
        )
        assert status == 200 and candles["length"] > 100 and "enter_long" in candles["columns"]
    assert not {"418", "429"} & exchange.stats()["totals"]["statuses"].keys()


async def newest_candle_ms(h: ControllerHarness, bot: str) -> int:
    status, candles = await h.call(
        "GET", f"/api/bots/{bot}/pair_candles?pair={pairs(1)[0]}&timeframe=1m"
    )
    assert status == 200, candles
    return candles["data_stop_ts"]


async def test_the_proxy_killed_is_restarted_and_bots_keep_trading(pool, exchange):
    h = pool
    pool_dir = h.pool_dir("pool-1")
    programs = supervisor_processes(pool_dir)
    proxy = programs["marketdata"]["pid"]
    bots = {b: programs[f"bot-{b}"]["pid"] for b in BOTS}
    candles = {b: await newest_candle_ms(h, b) for b in BOTS}

    os.kill(proxy, signal.SIGKILL)
    killed = time.monotonic()
    await wait_for(lambda: not pid_alive(proxy), 10, step=0.01)

    async def serving_again() -> bool:
        try:
            _reader, writer = await asyncio.open_connection("127.0.0.1", PROXY_PORT)
        except OSError:
            return False
        writer.close()
        return True

    await wait_for(serving_again, 30, step=0.05)
    down = time.monotonic() - killed
    restarted = supervisor_processes(pool_dir)["marketdata"]
    assert restarted["statename"] in ("STARTING", "RUNNING") and pid_alive(restarted["pid"])
    assert restarted["pid"] != proxy

    # The bots were not restarted, and their data feed recovers: each one analyses the
    # next candle, fetched through the new proxy.
    async def fed_again() -> bool:
        return all([await newest_candle_ms(h, b) > candles[b] for b in BOTS])

    await wait_for(fed_again, 150, step=2)
    recovered = time.monotonic() - killed
    programs = supervisor_processes(pool_dir)
    assert {b: programs[f"bot-{b}"]["pid"] for b in BOTS} == bots
    assert all(programs[f"bot-{b}"]["statename"] == "RUNNING" for b in BOTS)
    new = (await market_data(h))["exchanges"]["binance"]
    assert new["requests"] > 0  # counted by the new proxy, from zero
    print(
        f"\nproxy killed: listening again after {down:.2f} s; every bot had analysed a "
        f"newer candle {recovered:.0f} s after the kill (the next 1m candle)"
    )
    await wait_trading(h, ADMIN, BOTS)
