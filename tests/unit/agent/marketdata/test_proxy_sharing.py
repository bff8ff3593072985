"""Public market data through the proxy: one upstream request serves every bot, answers are
kept as long as they are valid, and what is not in a table is passed through as it came."""

from __future__ import annotations

import asyncio

from agent.marketdata.lifetime import Lifetimes
from agent.marketdata.proxy import ProxyConfig
from tests.unit.agent.marketdata.conftest import add_fault, upstream_requests

BOTS = 10
MINUTE_MS = 60_000


async def test_identical_requests_of_many_bots_make_one_upstream_request(start_proxy, emulator):
    # Nothing is kept (lifetime 0): only coalescing can share, while the exchange is slow.
    proxy = await start_proxy(ProxyConfig(lifetimes=Lifetimes(quote_ms=0, candle_ms=0)))
    await add_fault(emulator, latency_ms=1000, path="/api/v3/depth")
    bots = [proxy.ccxt_bot(emulator.url) for _ in range(BOTS)]
    try:
        books = await asyncio.gather(*(b.fetch_order_book("BTC/USDT", 5) for b in bots))
    finally:
        await asyncio.gather(*(b.close() for b in bots))
    assert all(book["bids"] == books[0]["bids"] and book["bids"] for book in books)
    assert await upstream_requests(emulator, "exchangeInfo") == 1  # ccxt's load_markets
    assert await upstream_requests(emulator, "depth") == 1
    counters = proxy.counters()
    assert counters["requests"] == 2 * BOTS and counters["upstream"] == 2
    assert counters["coalesced"] + counters["hits"] == 2 * (BOTS - 1)
    assert counters["coalesced"] >= BOTS - 1  # the slow order book, at least


async def test_quotes_and_the_market_list_are_kept_for_their_lifetimes(
    start_proxy, emulator, clock
):
    proxy = await start_proxy(ProxyConfig(lifetimes=Lifetimes(quote_ms=1500, candle_ms=2000)))
    base = proxy.base(emulator.url + "/api/v3")
    for path, endpoint, lifetime in [
        ("/depth?symbol=BTCUSDT&limit=5", "depth", 1.5),
        ("/ticker/24hr?symbol=ETHUSDT", "ticker/24hr", 1.5),
        ("/ticker/price", "ticker/price", 1.5),
        ("/ticker/bookTicker?symbol=BTCUSDT", "ticker/bookTicker", 1.5),
        ("/exchangeInfo", "exchangeInfo", 300),
    ]:
        first = await proxy.get(base, path)
        assert first[0] == 200
        clock.advance(lifetime - 0.01)
        assert await proxy.get(base, path) == first
        assert await upstream_requests(emulator, endpoint) == 1, endpoint
        clock.advance(0.02)
        assert (await proxy.get(base, path))[0] == 200
        assert await upstream_requests(emulator, endpoint) == 2, endpoint


async def test_server_time_and_ping_are_never_kept(start_proxy, emulator, clock):
    proxy = await start_proxy()
    base = proxy.base(emulator.url + "/api/v3")
    first = await proxy.get(base, "/time")
    clock.advance(0.5)
    second = await proxy.get(base, "/time")
    assert second[1]["serverTime"] - first[1]["serverTime"] == 500
    await proxy.get(base, "/ping")
    await proxy.get(base, "/ping")
    assert await upstream_requests(emulator, "time") == 2
    assert await upstream_requests(emulator, "ping") == 2


async def test_candles_open_for_a_short_while_closed_for_good(start_proxy, emulator, clock):
    proxy = await start_proxy(ProxyConfig(lifetimes=Lifetimes(candle_ms=2000)))
    base = proxy.base(emulator.url + "/api/v3")
    latest = "/klines?symbol=BTCUSDT&interval=1m&limit=5"
    _, rows, _ = await proxy.get(base, latest)
    assert rows[-1][6] > clock.ms()  # the open candle
    clock.advance(1.9)
    assert (await proxy.get(base, latest))[1] == rows
    clock.advance(0.2)
    assert (await proxy.get(base, latest))[1] != rows  # it moved on: asked again
    assert await upstream_requests(emulator, "klines") == 2

    # A range that ended an hour ago never changes.
    end = clock.ms() // MINUTE_MS * MINUTE_MS - 60 * MINUTE_MS
    history = f"/klines?symbol=BTCUSDT&interval=1m&limit=500&endTime={end}"
    _, closed, _ = await proxy.get(base, history)
    clock.advance(7 * 24 * 3600)
    assert (await proxy.get(base, history))[1] == closed
    assert await upstream_requests(emulator, "klines") == 3


async def test_the_open_candle_answer_ends_when_the_candle_closes(start_proxy, emulator, clock):
    proxy = await start_proxy(ProxyConfig(lifetimes=Lifetimes(candle_ms=2000)))
    base = proxy.base(emulator.url + "/api/v3")
    clock.advance(39.5)  # half a second before the minute turns
    latest = "/klines?symbol=BTCUSDT&interval=1m&limit=5"
    _, rows, _ = await proxy.get(base, latest)
    clock.advance(0.6)
    _, after, _ = await proxy.get(base, latest)
    assert after[-1][0] == rows[-1][0] + MINUTE_MS  # the new candle, not a stale answer
    assert await upstream_requests(emulator, "klines") == 2


async def test_the_same_parameters_in_another_order_share_an_answer(start_proxy, emulator):
    proxy = await start_proxy()
    base = proxy.base(emulator.url + "/api/v3")
    await proxy.get(base, "/depth?symbol=BTCUSDT&limit=5")
    await proxy.get(base, "/depth?limit=5&symbol=BTCUSDT")
    await proxy.get(base, "/depth?limit=10&symbol=BTCUSDT")
    assert await upstream_requests(emulator, "depth") == 2


async def test_errors_are_shared_by_waiting_bots_but_never_kept(start_proxy, emulator):
    proxy = await start_proxy()
    base = proxy.base(emulator.url + "/api/v3")
    for _ in range(2):
        status, body, _ = await proxy.get(base, "/depth?symbol=NOPE")
        assert (status, body["code"]) == (400, -1121)
    assert await upstream_requests(emulator, "depth") == 2


async def test_an_exchange_without_a_table_passes_through(start_proxy, emulator):
    proxy = await start_proxy()
    base = proxy.base(emulator.url + "/api/v3", exchange="kraken")
    for _ in range(3):
        assert (await proxy.get(base, "/depth?symbol=BTCUSDT&limit=5"))[0] == 200
    assert await upstream_requests(emulator, "depth") == 3
    counters = proxy.counters()
    assert counters["exchange"] == "kraken"
    assert counters["passthrough"] == 3 and counters["hits"] == counters["coalesced"] == 0


async def test_a_prefix_before_the_api_is_part_of_the_upstream(start_proxy, emulator):
    # Bots told apart at the emulator (/c/<client>/...) have different upstreams: nothing is
    # shared between them, and each is counted as its own client there.
    proxy = await start_proxy()
    for client in ("bot-1", "bot-2"):
        base = proxy.base(f"{emulator.url}/c/{client}/api/v3")
        assert (await proxy.get(base, "/depth?symbol=BTCUSDT&limit=5"))[0] == 200
        assert (await proxy.get(base, "/depth?symbol=BTCUSDT&limit=5"))[0] == 200
    assert await upstream_requests(emulator, "depth") == 2
