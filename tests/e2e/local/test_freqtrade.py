"""End to end with real FreqTrade: 12 `freqtrade webserver` bots in two real pools.

The tests run in order and share one cluster, as an operator's day would: provision,
reach the bots through the proxy (also with freqtrade-client), operate single bots,
keep other users out, and restart the controller without a second copy of any bot.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp
import pytest
from freqtrade_client import FtRestClient

from tests.support import bot_processes, user_token, wait_for

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


async def test_twelve_bots_fill_two_pools(cluster):
    h = cluster.harness
    placed = [await h.provision(ALICE, instanceId=bot) for bot in BOTS]
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
        assert config["strategy"] == "SampleStrategy"


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
        ("POST", f"/api/bots/{bot}/stop"),
        ("DELETE", f"/api/bots/{bot}"),
        ("GET", f"/api/pool/bot/{bot}"),
    ]:
        status, body = await h.call(method, path, BOB)
        assert status == 403, (method, path, body)
    status, body = await h.call("GET", "/api/bots", BOB)
    assert status == 200 and body["bots"] == []


async def test_controller_restart_adopts_without_duplicates(cluster):
    bots = BOTS[:11]
    before = await all_running(cluster, bots)
    await cluster.restart()
    after = await all_running(cluster, bots, timeout=60)
    assert after == before
    processes = freqtrade_processes(cluster.base_dir)
    assert {b: len(p) for b, p in processes.items()} == {b: 1 for b in bots}
    assert {b: p[0] for b, p in processes.items()} == before
