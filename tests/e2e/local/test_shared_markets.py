"""Real trading bots with their pool's market list loaded once by its preloader.

Each pool's preloader loads the market list of `PRELOAD_MARKETS` (the emulator's Binance)
before it forks the bots. A bot still fetches its own list, through the pool's market-data
proxy; when that equals the preloaded one it uses the preloader's tables, and it trades
exactly as before. When the exchange lists other markets than the preloader loaded, every
bot keeps the list it fetched.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.e2e.local.conftest import local_cluster
from tests.e2e.trading import SUITE_MARKETS, assert_trading_api, wait_trading
from tests.exchange import EmulatorProcess, trading_bot
from tests.exchange.botconfig import CCXT_OPTIONS, api_urls
from tests.support import parent_of, supervisor_processes, user_token

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="module")]
ALICE = user_token("alice")
BOTS = ["shm-1", "shm-2"]
# Ports of this module's own (31200-31399): market-data proxies first, then the bots.
PORTS = {"MARKET_DATA_BASE_PORT": "31200", "POOL_BASE_PORT": "31250"}
ADOPTED = "binance markets equal the pool's shared ones: using them"
KEPT = "binance markets differ from the pool's: building its own"


def preload_markets(url: str) -> str:
    config = {"urls": {"api": api_urls(url, "preloader")}, "options": CCXT_OPTIONS}
    return json.dumps([{"exchange": "binance", "ccxt_config": config}])


async def start_trading(base: Path, exchange: EmulatorProcess, preloaded_from: str) -> dict:
    """Two bots trading on `exchange`, their preloader loading markets from another URL;
    each bot's log, once both trade (answering /status, /profit, /balance)."""
    overrides = {**PORTS, "PRELOAD_MARKETS": preload_markets(preloaded_from)}
    async with local_cluster(base, overrides) as cluster:
        h = cluster.harness
        for bot in BOTS:
            await h.provision(ALICE, **trading_bot(exchange.url, bot))
        await wait_trading(h, ALICE, BOTS)
        pool_dir = h.pool_dir("pool-1")
        preloader = supervisor_processes(pool_dir)["preloader"]["pid"]
        for bot in BOTS:
            await assert_trading_api(h, ALICE, bot)
            assert parent_of((await h.pids())[bot]) == preloader  # forked: it had the list
        preloader_log = (pool_dir / "logs" / "preloader.log").read_text()
        assert "markets loaded once for the pool's bots: binance (" in preloader_log
        return {bot: (pool_dir / "logs" / f"bot-{bot}.log").read_text() for bot in BOTS}


async def test_bots_use_the_preloaded_markets_and_trade(tmp_path, exchange) -> None:
    logs = await start_trading(tmp_path, exchange, preloaded_from=exchange.url)
    for bot, log in logs.items():
        assert ADOPTED in log and KEPT not in log, bot


async def test_a_changed_market_list_is_kept_by_every_bot(tmp_path, exchange) -> None:
    # The preloader loaded a list with one market more than the bots' exchange lists now.
    with EmulatorProcess.start(markets=SUITE_MARKETS + 1) as other:
        logs = await start_trading(tmp_path, exchange, preloaded_from=other.url)
    for bot, log in logs.items():
        assert KEPT in log and ADOPTED not in log, bot
