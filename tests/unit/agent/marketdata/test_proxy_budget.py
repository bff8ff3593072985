"""One budget per upstream: the exchange's 429 and 418 back off every bot of the pool at once,
and public requests leave room for private ones within the address's weight limit."""

from __future__ import annotations

import asyncio

import ccxt.async_support as ccxt

from tests.exchange import pairs
from tests.unit.agent.marketdata.conftest import add_fault, emulator_stats, upstream_requests

PRIVATE = {"X-MBX-APIKEY": "emulator-key"}


async def test_a_429_backs_off_the_whole_upstream_for_its_retry_after(start_proxy, emulator, clock):
    proxy = await start_proxy()
    base = proxy.base(emulator.url + "/api/v3")
    await add_fault(emulator, status=429, count=1, path="/api/v3/depth")  # Retry-After: 1
    status, body, headers = await proxy.get(base, "/depth?symbol=BTCUSDT&limit=5")
    assert (status, body["code"], headers["Retry-After"]) == (429, -1003, "1")
    asked = await upstream_requests(emulator)
    # Meanwhile every request to that exchange is answered here, public or private.
    for path, extra in [("/klines?symbol=ETHUSDT&interval=1m", {}), ("/exchangeInfo", {}),
                        ("/openOrders?timestamp=1&signature=ab", PRIVATE)]:  # fmt: skip
        status, body, headers = await proxy.get(base, path, headers=extra)
        assert (status, headers["Retry-After"]) == (429, "1"), path
        assert body["code"] == -1003 and "backing off" in body["msg"]
    assert await upstream_requests(emulator) == asked
    clock.advance(1)
    assert (await proxy.get(base, "/depth?symbol=BTCUSDT&limit=5"))[0] == 200
    counters = proxy.counters()
    assert (counters["backoffs"], counters["refused"]) == (1, 3)


async def test_no_bot_is_banned_when_the_pool_exhausts_the_weight_limit(
    start_emulator, start_proxy, clock
):
    emulator = await start_emulator(weight_limit=30, ban_after=1)
    proxy = await start_proxy()
    bots = [proxy.ccxt_bot(emulator.url) for _ in range(10)]
    answered, refused = 0, 0
    try:
        for bot, pair in zip(bots, pairs(10), strict=True):  # each its own order book
            try:
                await bot.fetch_order_book(pair, 5)
                answered += 1
            except ccxt.DDoSProtection:  # FreqTrade waits and retries on it
                refused += 1
        # The exchange's minute turns: the pool's bots are served again.
        clock.advance(60 - clock() % 60)
        await bots[0].fetch_order_book(pairs(1)[0], 5)
    finally:
        await asyncio.gather(*(bot.close() for bot in bots))
    address = (await emulator_stats(emulator))["addresses"]["127.0.0.1"]
    # exchangeInfo (20) and two order books (5 each) fit in 30; the third's 429 backs off
    # the pool, and no bot asks again before the minute turns: not one 418.
    assert (answered, refused) == (2, 8)
    assert (address["answered_429"], address["answered_418"]) == (1, 0)
    assert proxy.counters()["backoffs"] == 1


async def test_a_418_ban_is_waited_out_by_the_whole_pool(start_emulator, start_proxy, clock):
    emulator = await start_emulator(weight_limit=25, ban_after=0, ban_seconds=120)
    proxy = await start_proxy()
    base = proxy.base(emulator.url + "/api/v3")
    assert (await proxy.get(base, "/exchangeInfo"))[0] == 200  # weight 20
    assert (await proxy.get(base, "/depth?symbol=BTCUSDT&limit=5"))[0] == 200  # 25
    status, _, headers = await proxy.get(base, "/depth?symbol=ETHUSDT&limit=5")
    assert (status, headers["Retry-After"]) == (418, "120")  # over at once: banned
    asked = await upstream_requests(emulator)
    clock.advance(60)
    assert (await proxy.get(base, "/time"))[0] == 418
    assert await upstream_requests(emulator) == asked
    clock.advance(60)
    assert (await proxy.get(base, "/time"))[0] == 200
    address = (await emulator_stats(emulator))["addresses"]["127.0.0.1"]
    assert address["answered_418"] == 1


async def test_public_requests_leave_the_rest_of_the_limit_to_private_ones(
    start_proxy, emulator, clock
):
    proxy = await start_proxy()
    base = proxy.base(emulator.url + "/api/v3")
    # Another pool on this host (the same address) used most of this minute's 6,000.
    emulator.state.budget.admit("127.0.0.1", 5396, clock.ms())
    status, _, headers = await proxy.get(base, "/depth?symbol=BTCUSDT&limit=5")
    assert (status, headers["X-MBX-USED-WEIGHT-1M"]) == (200, "5401")
    status, body, headers = await proxy.get(base, "/depth?symbol=ETHUSDT&limit=5")
    assert (status, headers["Retry-After"]) == (429, "40")  # when the minute turns
    assert "public share" in body["msg"]
    # A private request still goes (the exchange answers it: here, a missing signature).
    asked = await upstream_requests(emulator)
    status, body, _ = await proxy.get(base, "/openOrders?symbol=BTCUSDT", headers=PRIVATE)
    assert (status, body["code"]) == (400, -1102)
    assert await upstream_requests(emulator) == asked + 1
    clock.advance(40)
    assert (await proxy.get(base, "/depth?symbol=ETHUSDT&limit=5"))[0] == 200
    counters = proxy.counters()
    assert (counters["refused"], counters["backoffs"]) == (1, 0)
