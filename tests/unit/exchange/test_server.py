"""The emulator over HTTP: Binance's shapes, errors and weights, the counters and the faults."""

import asyncio
import json
import time

import aiohttp
import pytest

from tests.unit.exchange.conftest import NOW_MS, SMALL

KLINES = "/api/v3/klines?symbol=BTCUSDT&interval=1m"


async def get(client, path, status=200, **kw):
    response = await client.get(path, **kw)
    assert response.status == status, await response.text()
    assert response.headers["Content-Type"].startswith("application/json")
    return response, await response.json()


async def test_public_endpoints_answer_in_binance_shapes(make_client):
    client, _ = await make_client()
    assert (await get(client, "/api/v3/ping"))[1] == {}
    assert (await get(client, "/api/v3/time"))[1] == {"serverTime": NOW_MS}
    _, info = await get(client, "/api/v3/exchangeInfo")
    assert info["serverTime"] == NOW_MS and len(info["symbols"]) == SMALL
    assert info["rateLimits"][0] == {
        "rateLimitType": "REQUEST_WEIGHT",
        "interval": "MINUTE",
        "intervalNum": 1,
        "limit": 6000,
    }
    _, one = await get(client, '/api/v3/exchangeInfo?symbols=["ETHBTC","BTCUSDT"]')
    assert [s["symbol"] for s in one["symbols"]] == ["ETHBTC", "BTCUSDT"]

    _, rows = await get(client, KLINES)
    assert len(rows) == 500 and all(len(r) == 12 for r in rows)
    t, o, h, lo, c, v, close_t, qv, n, tb, tq, ignore = rows[-1]
    assert t == NOW_MS // 60_000 * 60_000 and close_t == t + 59_999 and ignore == "0"
    assert all(isinstance(x, str) for x in (o, h, lo, c, v, qv, tb, tq)) and isinstance(n, int)
    assert float(lo) <= min(float(o), float(c)) <= max(float(o), float(c)) <= float(h)
    assert len((await get(client, KLINES + "&limit=5000"))[1]) == 1000
    since = NOW_MS - 10 * 60_000
    _, rows = await get(client, f"{KLINES}&startTime={since}&limit=3")
    assert [r[0] for r in rows] == [since // 60_000 * 60_000 + i * 60_000 for i in (1, 2, 3)]

    _, book = await get(client, "/api/v3/depth?symbol=ETHUSDT&limit=5")
    assert set(book) == {"lastUpdateId", "bids", "asks"} and len(book["bids"]) == 5
    assert float(book["bids"][0][0]) < float(book["asks"][0][0])

    _, ticker = await get(client, "/api/v3/ticker/24hr?symbol=ETHUSDT")
    assert ticker["symbol"] == "ETHUSDT" and ticker["closeTime"] == NOW_MS
    assert ticker["bidPrice"] == book["bids"][0][0]
    _, tickers = await get(client, "/api/v3/ticker/24hr")
    assert len(tickers) == SMALL and tickers[1] == ticker
    _, mini = await get(client, '/api/v3/ticker/24hr?symbols=["ETHUSDT"]&type=MINI')
    assert "bidPrice" not in mini[0] and mini[0]["lastPrice"] == ticker["lastPrice"]
    _, price = await get(client, "/api/v3/ticker/price?symbol=ETHUSDT")
    assert price == {"symbol": "ETHUSDT", "price": ticker["lastPrice"]}
    _, tops = await get(client, '/api/v3/ticker/bookTicker?symbols=["ETHUSDT","BTCUSDT"]')
    assert [t["symbol"] for t in tops] == ["ETHUSDT", "BTCUSDT"]
    assert tops[0]["askPrice"] == book["asks"][0][0]
    assert len((await get(client, "/api/v3/ticker/price"))[1]) == SMALL


@pytest.mark.parametrize(
    ("path", "code"),
    [
        ("/api/v3/klines?symbol=NOPEUSDT&interval=1m", -1121),
        ("/api/v3/klines?interval=1m", -1102),
        ("/api/v3/klines?symbol=BTCUSDT", -1102),
        ("/api/v3/klines?symbol=BTCUSDT&interval=2m", -1120),
        ("/api/v3/klines?symbol=BTCUSDT&interval=1m&limit=ten", -1100),
        ("/api/v3/klines?symbol=BTCUSDT&interval=1m&startTime=9&endTime=1", -1023),
        ("/api/v3/depth?symbol=btcusdt", -1121),
        ('/api/v3/ticker/24hr?symbol=BTCUSDT&symbols=["BTCUSDT"]', -1101),
        ("/api/v3/ticker/24hr?symbols=BTCUSDT", -1100),
        ('/api/v3/ticker/price?symbols=["BTCUSDT","NOPE"]', -1121),
    ],
)
async def test_bad_requests_get_binance_errors(make_client, path, code):
    client, _ = await make_client()
    response, body = await get(client, path, status=400)
    assert body["code"] == code and body["msg"]
    assert "X-MBX-USED-WEIGHT-1M" in response.headers


async def test_weights_and_counters_per_endpoint_and_client(make_client):
    client, _ = await make_client()
    used = []
    for path in (
        "/api/v3/exchangeInfo",
        "/c/bot-1" + KLINES,
        "/c/bot-1" + KLINES,
        "/c/bot-2/api/v3/depth?symbol=BTCUSDT&limit=500",
        "/api/v3/ticker/24hr",
        '/api/v3/ticker/24hr?symbols=["BTCUSDT"]',
        "/api/v3/ticker/bookTicker",
    ):
        response, _ = await get(client, path)
        used.append(int(response.headers["X-MBX-USED-WEIGHT-1M"]))
    assert used == [20, 22, 24, 49, 129, 131, 135]
    _, stats = await get(client, "/_emulator/stats")
    assert stats["totals"]["requests"] == 7 and stats["totals"]["weight"] == 135
    assert stats["endpoints"]["GET /api/v3/klines"] == {"requests": 2, "weight": 4}
    assert stats["clients"]["bot-1"] == {"GET /api/v3/klines": {"requests": 2, "weight": 4}}
    assert stats["clients"]["bot-2"] == {"GET /api/v3/depth": {"requests": 1, "weight": 25}}
    assert stats["clients"]["-"]["GET /api/v3/ticker/24hr"] == {"requests": 2, "weight": 82}
    assert stats["addresses"]["127.0.0.1"]["used_weight_1m"] == 135
    assert (await client.post("/_emulator/reset")).status == 200
    _, stats = await get(client, "/_emulator/stats")
    assert stats["totals"]["requests"] == 0 and stats["clients"] == {}
    response = await client.get("/c/bad.name" + KLINES)
    assert response.status == 404 and response.headers["X-MBX-USED-WEIGHT-1M"] == "0"


async def test_faults_by_path_client_and_count(make_client):
    client, _ = await make_client()
    fault = {"status": 503, "count": 2, "path": "/api/v3/klines", "client": "bot-1"}
    response = await client.post("/_emulator/faults", json=fault)
    assert response.status == 200 and (await response.json())["added"] == [1]
    for _ in range(2):
        _, body = await get(client, "/c/bot-1" + KLINES, status=503)
        assert body["code"] == -1001
        await get(client, "/c/bot-2" + KLINES)  # another client: untouched
        await get(client, "/c/bot-1/api/v3/time")  # another path: untouched
    await get(client, "/c/bot-1" + KLINES)  # count used up: the fault is gone
    assert (await get(client, "/_emulator/faults"))[1] == {"faults": []}
    await client.post("/_emulator/faults", json=[{"status": 429}, {"latency_ms": 1}])
    assert len((await get(client, "/_emulator/faults"))[1]["faults"]) == 2
    assert (await get(client, "/api/v3/ping", status=429))[0].headers["Retry-After"]
    assert (await client.delete("/_emulator/faults")).status == 200
    await get(client, "/api/v3/ping")
    for bad in ({"rate": 2}, {"nope": 1}, {"client": "a b"}, {"status": "503"}, [1]):
        assert (await client.post("/_emulator/faults", json=bad)).status == 400
    _, stats = await get(client, "/_emulator/stats")
    assert stats["totals"]["statuses"]["503"] == 2 and stats["totals"]["statuses"]["429"] == 1


async def test_fault_rate_is_deterministic(make_client):
    patterns = []
    for _ in range(2):
        client, _ = await make_client(seed=5)
        await client.post("/_emulator/faults", json={"status": 500, "rate": 0.5})
        patterns.append([(await client.get("/api/v3/ping")).status for _ in range(40)])
    assert patterns[0] == patterns[1]
    assert 10 <= patterns[0].count(500) <= 30


async def test_latency_and_hanging_until_the_client_gives_up(make_client):
    client, state = await make_client()
    await client.post("/_emulator/faults", json={"latency_ms": 200, "path": "/api/v3/time"})
    started = time.monotonic()
    await get(client, "/api/v3/time")
    assert time.monotonic() - started >= 0.2
    await client.post("/_emulator/faults", json={"timeout": True, "path": "/api/v3/ping"})
    with pytest.raises(asyncio.TimeoutError):
        await client.get("/api/v3/ping", timeout=aiohttp.ClientTimeout(total=0.3))
    for _ in range(50):  # the handler notices the client left, and stops hanging
        if state.accounting.statuses.get(499):
            break
        await asyncio.sleep(0.05)
    assert state.accounting.statuses[499] == 1


async def test_over_the_weight_budget_429_then_a_418_ban(make_client, clock):
    client, _ = await make_client(weight_limit=10, ban_after=2, ban_seconds=90)
    clock.ms = NOW_MS // 60_000 * 60_000 + 15_000  # 45 s left in this minute
    for _ in range(10):
        await get(client, "/api/v3/ping")
    for _ in range(2):
        response, body = await get(client, "/api/v3/ping", status=429)
        assert body["code"] == -1003 and "request weight" in body["msg"]
        assert response.headers["Retry-After"] == "45"
        assert response.headers["X-MBX-USED-WEIGHT-1M"] == "10"
    response, body = await get(client, "/api/v3/ping", status=418)  # it kept calling
    assert body["code"] == -1003 and "banned until" in body["msg"]
    assert response.headers["Retry-After"] == "90"
    clock.ms += 60_000  # a new minute, still banned
    response, _ = await get(client, "/api/v3/ping", status=418)
    assert response.headers["Retry-After"] == "30"
    _, stats = await get(client, "/_emulator/stats")
    address = stats["addresses"]["127.0.0.1"]
    assert (address["answered_429"], address["answered_418"]) == (2, 2)
    assert stats["endpoints"]["GET /api/v3/ping"] == {"requests": 14, "weight": 10}
    clock.ms += 31_000
    await get(client, "/api/v3/ping")  # the ban is over


async def test_a_budget_of_zero_is_unlimited(make_client):
    client, _ = await make_client(weight_limit=0)
    for _ in range(30):
        await get(client, "/api/v3/exchangeInfo?symbol=BTCUSDT")


async def test_exchange_info_bytes_are_json(make_client):
    client, _ = await make_client()
    response = await client.get("/api/v3/exchangeInfo")
    assert json.loads(await response.read())["timezone"] == "UTC"


async def test_closed_candles_are_kept_and_the_open_one_moves(make_client, clock):
    client, _ = await make_client()
    assert NOW_MS % 60_000 < 45_000
    _, first = await get(client, KLINES + "&limit=50")
    clock.ms += 15_000  # same minute
    _, second = await get(client, KLINES + "&limit=50")
    assert second[:-1] == first[:-1] and second[-1][0] == first[-1][0]
    assert second[-1][4] != first[-1][4] and float(second[-1][5]) > float(first[-1][5])
    clock.ms += 45_000  # the next minute: the open candle closed, a new one opened
    _, third = await get(client, KLINES + "&limit=50")
    assert third[:-2] == second[1:-1] and third[-1][0] == second[-1][0] + 60_000
    fresh, _ = await make_client()  # nothing kept: the same answer
    assert (await get(fresh, KLINES + "&limit=50"))[1] == third
