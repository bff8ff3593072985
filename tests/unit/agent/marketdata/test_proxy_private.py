"""Private requests: the agent routes none through the proxy (bots send them to the exchange
directly); one that arrives anyway (a keyed request on the public URL, a user's own
routing) passes through: its key and signature reach the exchange as they were sent, the
answer goes to that bot alone, and nothing of it is kept or logged."""

from __future__ import annotations

import asyncio

import ccxt.async_support as ccxt
import pytest

from tests.unit.agent.marketdata.conftest import emulator_stats

KEY, SECRET = "emulator-key", "emulator-secret"  # what the emulator accepts
OTHER_KEY, OTHER_SECRET = "another-bots-key", "another-bots-secret"


async def test_signed_requests_pass_through_unchanged(start_proxy, emulator, clock, log_output):
    clock.follow_wall_clock()
    proxy = await start_proxy()
    mine = proxy.ccxt_bot(emulator.url, private_too=True, apiKey=KEY, secret=SECRET)
    theirs = proxy.ccxt_bot(emulator.url, private_too=True, apiKey=OTHER_KEY, secret=OTHER_SECRET)
    try:
        await mine.load_markets()
        kept = len(proxy.proxy.cache)
        # Signed over the query as ccxt ordered it: the emulator checks the HMAC.
        balance, refused = await asyncio.gather(
            mine.fetch_balance(), theirs.fetch_balance(), return_exceptions=True
        )
        again = await mine.fetch_balance()  # asked again, not answered from anywhere
    finally:
        await asyncio.gather(mine.close(), theirs.close())
    assert balance["USDT"]["free"] == 10000.0 and again["USDT"]["free"] == 10000.0
    # The other bot's key went upstream as its own, and was refused there (Binance's -2015).
    assert isinstance(refused, ccxt.AuthenticationError)
    assert "-2015" in str(refused)
    stats = await emulator_stats(emulator)
    assert stats["endpoints"]["GET /api/v3/account"]["requests"] == 3
    assert stats["totals"]["statuses"] == {"200": 3, "401": 1}
    assert len(proxy.proxy.cache) == kept  # nothing private is kept
    counters = proxy.counters()
    # The second bot's market list was the first one's: the only answer shared.
    assert counters["passthrough"] == 3 and counters["hits"] + counters["coalesced"] == 1

    logged = log_output.getvalue()
    assert '"event": "pass_through"' in logged and "/api/v3/account" in logged
    for secret in (KEY, SECRET, OTHER_KEY, OTHER_SECRET, "signature", "timestamp=", "X-MBX"):
        assert secret not in logged, secret


@pytest.mark.parametrize("method", ["POST", "DELETE"])
async def test_other_methods_and_bodies_pass_through(start_proxy, emulator, method):
    proxy = await start_proxy()
    base = proxy.base(emulator.url + "/api/v3")
    async with proxy.http.request(method, base + "/order?symbol=BTCUSDT", data=b"a=1") as r:
        assert r.status == 404  # the emulator places no orders: its own answer, passed on
    assert proxy.counters()["passthrough"] == 1


async def test_a_public_path_with_an_api_key_is_not_shared(start_proxy, emulator):
    proxy = await start_proxy()
    base = proxy.base(emulator.url + "/api/v3")
    headers = {"X-MBX-APIKEY": KEY}
    for _ in range(2):
        status, _, _ = await proxy.get(base, "/depth?symbol=BTCUSDT&limit=5", headers=headers)
        assert status == 200
    assert proxy.counters()["passthrough"] == 2 and len(proxy.proxy.cache) == 0


async def test_as_the_agent_routes_bots_private_requests_never_reach_the_proxy(
    start_proxy, emulator, clock
):
    clock.follow_wall_clock()
    proxy = await start_proxy()
    bot = proxy.ccxt_bot(emulator.url, apiKey=KEY, secret=SECRET)
    try:
        balance = await bot.fetch_balance()
    finally:
        await bot.close()
    assert balance["USDT"]["free"] == 10000.0
    stats = await emulator_stats(emulator)
    assert stats["endpoints"]["GET /api/v3/account"]["requests"] == 1
    counters = proxy.counters()  # the market list, and nothing else
    assert (counters["requests"], counters["passthrough"]) == (1, 0)
