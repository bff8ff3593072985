"""End to end with real FreqTrade: 12 trading bots in two real pools.

Each bot is a real `freqtrade trade --dry-run` process trading the DemoStrategy against
the exchange emulator. The tests run in order and share one cluster, as an operator's
day would: provision, watch the bots trade through the proxy (also with
freqtrade-client), operate single bots, keep other users out, restart the controller,
kill a bot and an agent, and lose a pool for good: every trade survives each of these,
and no bot ever runs twice.
"""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

import aiohttp
import pytest
from freqtrade_client import FtRestClient

from tests.e2e.trading import (
    STRATEGY,
    SUITE_PAIRS,
    assert_market_data_proxied,
    assert_trades_kept,
    assert_trading_api,
    now,
    trades,
    wait_trading,
)
from tests.exchange import pairs, trading_bot
from tests.support import bot_processes, supervisor_processes, supervisord_pid, user_token, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="module")]
ALICE = user_token("alice")
BOB = user_token("bob")
BOTS = [f"alice-bot-{i}" for i in range(1, 13)]


async def states(cluster) -> dict[str, dict]:
    status, body = await cluster.harness.call("GET", "/api/bots", ALICE)
    assert status == 200
    return {b["instanceId"]: b for b in body["bots"]}


async def all_running(cluster, bots=BOTS, timeout: float = 180) -> dict[str, int]:
    """Wait until every bot runs and answers its ping; return their pids."""

    async def ready():
        current = await states(cluster)
        pids = {}
        for bot in bots:
            proc = current[bot]["process"]
            fresh = current[bot]["status"] == "running"
            if not fresh or not proc or proc["state"] != "RUNNING" or not proc["ping"]["ok"]:
                return None
            pids[bot] = proc["pid"]
        return pids

    return await wait_for(ready, timeout, step=0.5)


def freqtrade_processes(base_dir: Path) -> dict[str, list[int]]:
    """Bot id → pids of freqtrade processes running in that bot's directory, in every pool."""
    found: dict[str, list[int]] = {}
    for bots_dir in base_dir.glob("pools/*/bots"):
        found.update(bot_processes(bots_dir, "freqtrade"))
    return found


async def test_twelve_bots_fill_two_pools(cluster, exchange):
    h = cluster.harness
    placed = [await h.provision(ALICE, **trading_bot(exchange.url, bot)) for bot in BOTS]
    assert [p["poolId"] for p in placed] == ["pool-1"] * 10 + ["pool-2"] * 2
    assert [p["port"] for p in placed] == list(range(9000, 9012))
    await all_running(cluster)
    status, body = await h.call("GET", "/api/pool/status")
    assert status == 200
    assert body["totalPools"] == 2 and body["totalBots"] == 12
    assert [p["botsCount"] for p in body["pools"]] == [10, 2]
    assert body["health"]["status"] == "healthy"


async def assert_bots_answer(harness, bots: list[str]) -> None:
    """Each bot's real ping and show_config, through both proxy prefixes."""
    for bot in bots:
        status, body = await harness.call("GET", f"/api/bots/{bot}/ping", ALICE)
        assert (status, body) == (200, {"status": "pong"})
        status, config = await harness.call("GET", f"/bots/{bot}/api/v1/show_config", ALICE)
        assert status == 200
        assert config["bot_name"] == bot and config["dry_run"] is True
        assert config["strategy"] == STRATEGY and config["runmode"] == "dry_run"


async def test_bots_trade_and_show_it_through_the_proxy(cluster, exchange):
    h = cluster.harness
    await wait_trading(h, ALICE, BOTS)
    for bot in BOTS:
        await assert_trading_api(h, ALICE, bot)
        # The strategy analysed the emulator's candles: the dataframe has its signals.
        pair = pairs(SUITE_PAIRS)[0]
        status, candles = await h.call(
            "GET", f"/api/bots/{bot}/pair_candles?pair={pair}&timeframe=1m", ALICE
        )
        assert status == 200 and candles["length"] > 100, candles.get("length")
        assert "enter_long" in candles["columns"]
    # Each bot asked the exchange for markets, candles and order books, under its own name.
    clients = exchange.stats()["clients"]
    for bot in BOTS:
        asked = clients[bot]
        assert {f"GET /api/v3/{e}" for e in ("exchangeInfo", "klines", "depth")} <= asked.keys()
    # ... through their pool's market-data proxy.
    await assert_market_data_proxied(h, ["pool-1", "pool-2"])


async def test_proxy_serves_each_bots_real_api(cluster):
    await assert_bots_answer(cluster.harness, BOTS)


async def test_freqtrade_client_and_login_through_controller(cluster):
    h = cluster.harness
    url = f"{h.base}/bots/{BOTS[0]}"
    # freqtrade-client sends basic auth on every request: user id and an API token.
    client = FtRestClient(url, "alice", ALICE)
    config = await asyncio.to_thread(client.show_config)
    assert config["bot_name"] == BOTS[0]
    assert "version" in await asyncio.to_thread(client.version)
    assert await asyncio.to_thread(client.status)  # its open trades
    assert "trades" in await asyncio.to_thread(client.trades)  # its closed ones
    # FreqUI's flow: login with basic auth, then Bearer tokens issued by the controller.
    status, tokens = await h.call(
        "POST",
        f"/bots/{BOTS[1]}/api/v1/token/login",
        None,
        headers={"Authorization": aiohttp.encode_basic_auth("alice", ALICE)},
    )
    assert status == 200
    status, config = await h.call(
        "GET", f"/bots/{BOTS[1]}/api/v1/show_config", tokens["access_token"]
    )
    assert status == 200 and config["bot_name"] == BOTS[1]
    status, refreshed = await h.call(
        "POST", f"/bots/{BOTS[1]}/api/v1/token/refresh", tokens["refresh_token"]
    )
    assert status == 200 and "access_token" in refreshed


async def test_lifecycle_acts_on_exactly_one_bot(cluster):
    h = cluster.harness
    before = await all_running(cluster)
    target = BOTS[2]
    status, _ = await h.call("POST", f"/api/bots/{target}/stop", ALICE)
    assert status == 200

    async def stopped():
        return (await states(cluster))[target]["process"]["state"] == "STOPPED"

    await wait_for(stopped, 60)
    others = await all_running(cluster, [b for b in BOTS if b != target])
    assert all(others[b] == before[b] for b in others)
    status, body = await h.call("GET", f"/api/bots/{target}/ping", ALICE)
    assert status == 503 and "error" in body

    assert (await h.call("POST", f"/api/bots/{target}/start", ALICE))[0] == 200
    after_start = await all_running(cluster)
    assert after_start[target] != before[target]

    restarted = BOTS[4]
    assert (await h.call("POST", f"/api/bots/{restarted}/restart", ALICE))[0] == 200

    async def new_pid():
        pids = await all_running(cluster)
        return pids if pids[restarted] != after_start[restarted] else None

    after_restart = await wait_for(new_pid, 120)
    assert all(after_restart[b] == after_start[b] for b in BOTS if b != restarted)

    deleted = BOTS[11]
    status, body = await h.call("DELETE", f"/api/bots/{deleted}", ALICE)
    assert status == 200 and body["status"] == "deleted"
    remaining = await all_running(cluster, BOTS[:11])
    assert all(remaining[b] == after_restart[b] for b in BOTS[:11])
    assert deleted not in freqtrade_processes(cluster.base_dir)
    assert list((cluster.base_dir / "pools" / "pool-2" / "archive").glob(f"{deleted}-*"))


async def test_other_user_is_forbidden(cluster):
    h = cluster.harness
    bot = BOTS[0]
    for method, path in [
        ("GET", f"/api/bots/{bot}"),
        ("GET", f"/api/bots/{bot}/show_config"),
        ("GET", f"/bots/{bot}/api/v1/show_config"),
        ("GET", f"/api/bots/{bot}/trades"),
        ("POST", f"/api/bots/{bot}/forceexit"),
        ("POST", f"/api/bots/{bot}/stop"),
        ("DELETE", f"/api/bots/{bot}"),
        ("GET", f"/api/pool/bot/{bot}"),
    ]:
        status, body = await h.call(method, path, BOB)
        assert status == 403, (method, path, body)
    status, body = await h.call("GET", "/api/bots", BOB)
    assert status == 200 and body["bots"] == []


async def all_trades(cluster, bots: list[str]) -> dict[str, dict[int, dict]]:
    return {bot: await trades(cluster.harness, ALICE, bot) for bot in bots}


def assert_each_runs_once(cluster, bots: list[str]) -> None:
    processes = freqtrade_processes(cluster.base_dir)
    assert {b: len(p) for b, p in processes.items()} == {b: 1 for b in bots}


async def test_controller_restart_adopts_without_duplicates(cluster):
    bots = BOTS[:11]
    before = await all_running(cluster, bots)
    event, kept = now(), await all_trades(cluster, bots)
    await cluster.restart()
    after = await all_running(cluster, bots, timeout=60)
    assert after == before
    assert_each_runs_once(cluster, bots)
    assert {b: p[0] for b, p in freqtrade_processes(cluster.base_dir).items()} == before
    for bot, kept_trades in (await all_trades(cluster, bots)).items():
        assert_trades_kept(kept[bot], kept_trades, event)


async def test_a_killed_bot_comes_back_with_its_trades(cluster):
    bots, victim = BOTS[:11], BOTS[3]
    before = await all_running(cluster, bots)
    await wait_trading(cluster.harness, ALICE, [victim])
    event, kept = now(), await trades(cluster.harness, ALICE, victim)
    os.kill(before[victim], signal.SIGKILL)

    async def replaced():
        pids = await all_running(cluster, bots)
        return pids if pids[victim] != before[victim] else None

    after = await wait_for(replaced, 120)
    assert all(after[b] == before[b] for b in bots if b != victim)
    assert_each_runs_once(cluster, bots)
    assert_trades_kept(kept, await trades(cluster.harness, ALICE, victim), event)
    await assert_trading_api(cluster.harness, ALICE, victim)


async def test_a_killed_agent_leaves_every_bot_trading(cluster):
    bots = BOTS[:11]
    pool = cluster.harness.pool_dir("pool-1")
    before = await all_running(cluster, bots)
    event, kept = now(), await all_trades(cluster, bots)
    agent = supervisor_processes(pool)["agent"]["pid"]
    os.kill(agent, signal.SIGKILL)
    await wait_for(lambda: supervisor_processes(pool)["agent"]["pid"] not in (agent, 0), 30)
    await cluster.harness.wait_applied("pool-1")
    assert await all_running(cluster, bots) == before
    assert_each_runs_once(cluster, bots)
    for bot, kept_trades in (await all_trades(cluster, bots)).items():
        assert_trades_kept(kept[bot], kept_trades, event)


async def test_a_lost_pool_has_its_bot_moved_with_its_trades(cluster):
    """pool-2 cannot start again: its bot moves to a new pool, its trade database with it."""
    h, moved = cluster.harness, BOTS[10]
    await all_running(cluster, BOTS[:11])
    event, kept = now(), await trades(h, ALICE, moved)
    old = h.pool_dir("pool-2")
    (old / "supervisord.conf").write_text("[this is not supervisord's configuration\n")
    os.kill(supervisord_pid(old), signal.SIGKILL)

    async def elsewhere() -> bool:
        return (await states(cluster))[moved]["poolId"] not in ("pool-2", None)

    await wait_for(elsewhere, 120, step=0.5)
    await all_running(cluster, BOTS[:11])
    assert (await states(cluster))[moved]["poolId"] == "pool-3"
    assert_each_runs_once(cluster, BOTS[:11])
    assert_trades_kept(kept, await trades(h, ALICE, moved), event)
    await assert_trading_api(h, ALICE, moved)
