"""A pool whose market-data proxy cannot start, or is not trustworthy, with real supervisord
and fake bots: the bots keep running, their configs name their exchange directly while the
proxy does not hold its port, and the proxy again once it does.

The proxy is made to fail two ways: a stranger (this test) listens on its port before the
pool exists, so it cannot start; later supervisord stops it. Fixed ports 30600-30799 only:
the proxy at 30600, bots from 30700.
"""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any

import pytest

from tests.support import ControllerHarness, supervisor_processes, supervisor_rpc, wait_for

pytestmark = pytest.mark.integration
PROXY_PORT = 30600
BOT = "mdf-1"
BINANCE = {"exchange": {"name": "binance", "key": "", "secret": ""}, "dry_run": True}


def routed(h: ControllerHarness) -> bool:
    """Whether the bot's config in its pool names the pool's proxy (else its exchange)."""
    config = json.loads((h.pool_dir("pool-1") / "bots" / BOT / "config.json").read_bytes())
    urls = config["exchange"].get("ccxt_config", {}).get("urls", {}).get("api", {})
    return urls.get("public", "").startswith(f"http://127.0.0.1:{PROXY_PORT}/")


async def market_data(h: ControllerHarness) -> dict[str, Any]:
    status, body = await h.call("GET", "/api/pool/status")
    assert status == 200, body
    [pool] = body["pools"]
    return pool["marketData"] or {}


async def holder_is(h: ControllerHarness, holder: str) -> bool:
    return (await market_data(h)).get("portHolder") == holder


async def has_event(h: ControllerHarness, kind: str) -> bool:
    status, body = await h.call("GET", "/api/pool/events/history?limit=1000")
    assert status == 200, body
    return any(e["type"] == kind for e in body["events"])


async def test_bots_trade_direct_while_the_proxy_cannot_hold_its_port(
    harness_factory, tmp_path: Path
) -> None:
    stranger = socket.socket()
    stranger.bind(("127.0.0.1", PROXY_PORT))
    stranger.listen()
    try:
        h = await harness_factory(
            MARKET_DATA_PROXY="true", MARKET_DATA_BASE_PORT=str(PROXY_PORT),
            POOL_BASE_PORT="30700",
        )  # fmt: skip
        await h.provision(instanceId=BOT, config=BINANCE)
        # The proxy cannot start: the bot starts anyway, to its exchange directly.
        first = await h.wait_running(BOT)
        assert not routed(h)
        await wait_for(lambda: holder_is(h, "stranger"))
        await wait_for(lambda: has_event(h, "market_data_port_taken"))
        assert supervisor_processes(h.pool_dir("pool-1"))["marketdata"]["statename"] != "RUNNING"
    finally:
        stranger.close()

    # The stranger gone, supervisord's next try starts the proxy: the bot's config names it
    # again, for its next start; the running bot is not restarted for it.
    await wait_for(lambda: holder_is(h, "proxy"), timeout=60)
    await wait_for(lambda: routed(h))
    assert (await h.bot(BOT))["process"]["pid"] == first["process"]["pid"]
    await wait_for(lambda: has_event(h, "market_data_port_recovered"))

    # The proxy stopped (a proxy that will not come back): bots start direct again.
    supervisor_rpc(h.pool_dir("pool-1"), "stopProcess", "marketdata")
    await wait_for(lambda: holder_is(h, "none"))
    await wait_for(lambda: not routed(h))
    status, _ = await h.call("POST", f"/api/bots/{BOT}/restart")
    assert status in (200, 202)
    restarted = await wait_for(lambda: _new_process(h, first["process"]["pid"]))
    assert restarted and not routed(h)

    supervisor_rpc(h.pool_dir("pool-1"), "startProcess", "marketdata")
    await wait_for(lambda: holder_is(h, "proxy"))
    await wait_for(lambda: routed(h))


async def _new_process(h: ControllerHarness, old_pid: int) -> bool:
    bot = await h.bot(BOT)
    process = bot.get("process") or {}
    return process.get("state") == "RUNNING" and process.get("pid") not in (None, old_pid)


async def test_an_admin_turns_a_pools_proxy_off_and_on(harness_factory) -> None:
    h = await harness_factory(
        MARKET_DATA_PROXY="true", MARKET_DATA_BASE_PORT=str(PROXY_PORT), POOL_BASE_PORT="30700"
    )
    await h.provision(instanceId=BOT, config=BINANCE)
    first = await h.wait_running(BOT)
    await wait_for(lambda: holder_is(h, "proxy"))
    assert routed(h)

    status, body = await h.call("PUT", "/api/pool/pools/pool-1/market-data", json={"proxy": False})
    assert status == 200 and body["proxy"] is False and body["override"] is False, body
    # The proxy goes; the running bot is restarted, to its exchange directly.
    await wait_for(lambda: "marketdata" not in supervisor_processes(h.pool_dir("pool-1")))
    await wait_for(lambda: _new_process(h, first["process"]["pid"]))
    assert not routed(h)
    assert (await market_data(h)) == {}

    status, body = await h.call("PUT", "/api/pool/pools/pool-1/market-data", json={"proxy": None})
    assert status == 200 and body["proxy"] is True and body["override"] is None, body
    await wait_for(lambda: holder_is(h, "proxy"))
    await wait_for(lambda: routed(h))
