"""Real ccxt (async, as FreqTrade uses it) against the emulator, configured by exchange_config."""

import hashlib
import hmac
import time
from urllib.parse import urlencode

import ccxt
import ccxt.async_support as ccxt_async
import ccxt.pro
import pytest

from tests.exchange import ExchangeEmulator, exchange_config, pairs
from tests.exchange.botconfig import api_urls

KEY, SECRET = "test-key", "test-secret"


def urls_in(value: object) -> list[str]:
    if isinstance(value, dict):
        return [u for v in value.values() for u in urls_in(v)]
    if isinstance(value, list):
        return [u for v in value for u in urls_in(v)]
    return [value] if isinstance(value, str) and "://" in value else []


async def test_ccxt_binance_trades_against_the_emulator():
    async with ExchangeEmulator(api_key=KEY, api_secret=SECRET) as emu:
        config = exchange_config(emu.url, pairs(20), client="ccxt-1")
        ex = ccxt_async.binance(
            {
                **config["exchange"]["ccxt_async_config"],
                "apiKey": KEY,
                "secret": SECRET,
                "enableRateLimit": False,
            }
        )
        try:
            markets = await ex.load_markets()
            assert len(markets) >= 2000
            btc = markets["BTC/USDT"]
            assert btc["active"] and btc["spot"] and btc["precision"]["price"] == 0.01
            assert btc["limits"]["cost"]["min"] == 5 and btc["limits"]["amount"]["min"] > 0
            assert all(p in markets for p in config["exchange"]["pair_whitelist"])

            now = int(time.time() * 1000)
            candles = await ex.fetch_ohlcv("ETH/USDT", "1m", limit=1000)
            assert len(candles) == 1000 and candles[-1][0] == now // 60_000 * 60_000
            since = await ex.fetch_ohlcv("SOL/BTC", "5m", since=now - 3_600_000, limit=5)
            assert len(since) == 5 and since[0][0] >= now - 3_600_000

            book = await ex.fetch_order_book("BTC/USDT", 20)
            assert len(book["bids"]) == 20 and book["bids"][0][0] < book["asks"][0][0]
            ticker = await ex.fetch_ticker("BTC/USDT")
            assert ticker["bid"] < ticker["ask"] and ticker["low"] <= ticker["last"]
            assert ticker["last"] <= ticker["high"] and ticker["quoteVolume"] > 0
            some = await ex.fetch_tickers(["BTC/USDT", "ETH/BTC"])
            assert set(some) == {"BTC/USDT", "ETH/BTC"}
            assert len(await ex.fetch_tickers()) >= 2000
            assert abs(await ex.fetch_time() - time.time() * 1000) < 5_000
            assert set(await ex.fetch_bids_asks(["ETH/USDT"])) == {"ETH/USDT"}

            balance = await ex.fetch_balance()
            assert balance["USDT"]["free"] == 10_000 and balance["BTC"]["total"] == 0.5
            assert await ex.fetch_open_orders("BTC/USDT") == []

            ex.secret = "wrong"
            with pytest.raises(ccxt.AuthenticationError):
                await ex.fetch_balance()
        finally:
            await ex.close()
        stats = emu.state.accounting.snapshot(0)["clients"]["ccxt-1"]
        assert stats["GET /api/v3/exchangeInfo"] == {"requests": 1, "weight": 20}
        assert stats["GET /api/v3/account"]["requests"] == 2
        assert stats["GET /api/v3/klines"]["requests"] == 2


async def test_a_timeout_fault_hangs_until_ccxt_gives_up():
    async with ExchangeEmulator(markets=50) as emu:
        emu.state.faults.add({"timeout": True, "path": "/api/v3/time", "count": 1})
        conf = exchange_config(emu.url, pairs(1), client="c")["exchange"]["ccxt_async_config"]
        ex = ccxt_async.binance({**conf, "timeout": 300})
        try:
            with pytest.raises(ccxt.RequestTimeout):
                await ex.fetch_time()
            assert await ex.fetch_time() > 0  # count 1: the next one is answered
        finally:
            await ex.close()
        statuses = emu.state.accounting.statuses
        for _ in range(40):
            if statuses.get(499):
                break
            await __import__("asyncio").sleep(0.05)
        assert statuses[499] == 1 and statuses[200] == 1


def test_the_config_points_only_at_the_emulator():
    url = "http://127.0.0.1:5555"
    config = exchange_config(url, pairs(3), client="bot-7")
    exchange = config["exchange"]
    assert exchange["name"] == "binance" and exchange["enable_ws"] is False
    assert exchange["pair_whitelist"] == ["BTC/USDT", "ETH/USDT", "BNB/USDT"]
    assert config["pairlists"] == [{"method": "StaticPairList"}]
    assert config["timeframe"] == "1m" and not config.get("fiat_display_currency")
    assert not config["telegram"]["enabled"]
    for key in ("ccxt_config", "ccxt_async_config"):
        assert exchange[key]["options"] == {
            "fetchMarkets": {"types": ["spot"]},
            "fetchMargins": False,
            "fetchCurrencies": False,
        }
        assert set(exchange[key]["urls"]["api"]) >= set(ccxt.binance().urls["api"])
    found = urls_in(config)
    assert len(found) > 20
    for u in found:
        assert u.startswith(("http://127.0.0.1:5555/c/bot-7/", "ws://127.0.0.1:5555/c/bot-7/")), u
    # The paths are kept: ccxt builds e.g. .../api/v3/klines from them.
    assert api_urls(url)["public"] == "http://127.0.0.1:5555/api/v3"
    assert api_urls(url)["sapi"] == "http://127.0.0.1:5555/sapi/v1"
    # And what FreqTrade builds from it (ccxt.pro for async) has no other host left.
    for api in (
        ccxt.binance(exchange["ccxt_config"]),
        ccxt.pro.binance(exchange["ccxt_async_config"]),
    ):
        for u in urls_in(api.urls["api"]):
            assert u.startswith(("http://127.0.0.1:5555/", "ws://127.0.0.1:5555/")), u
    with pytest.raises(ValueError):
        exchange_config(url, pairs(1), client="not/valid")


def sign(query: dict, secret: str = SECRET) -> str:
    text = urlencode(query)
    return (
        text + "&signature=" + hmac.new(secret.encode(), text.encode(), hashlib.sha256).hexdigest()
    )


@pytest.mark.parametrize(
    ("headers", "query", "status", "code"),
    [
        ({}, {"timestamp": "now"}, 401, -2014),
        ({"X-MBX-APIKEY": "other-key"}, {"timestamp": "now"}, 401, -2015),
        ({"X-MBX-APIKEY": KEY}, {}, 400, -1102),
        ({"X-MBX-APIKEY": KEY}, {"timestamp": "old"}, 400, -1021),
        ({"X-MBX-APIKEY": KEY}, {"timestamp": "now", "recvWindow": 70000}, 400, -1131),
        ({"X-MBX-APIKEY": KEY}, {"timestamp": "now", "secret": "bad"}, 400, -1022),
        ({"X-MBX-APIKEY": KEY}, {"timestamp": "now", "unsigned": True}, 400, -1102),
        ({"X-MBX-APIKEY": KEY}, {"timestamp": "now", "recvWindow": 10000}, 200, None),
    ],
)
async def test_signed_endpoints_check_key_time_and_signature(
    make_client, clock, headers, query, status, code
):
    client, state = await make_client(api_key=KEY, api_secret=SECRET)
    q = dict(query)
    secret, unsigned = q.pop("secret", SECRET), q.pop("unsigned", False)
    if "timestamp" in q:
        q["timestamp"] = clock.ms - (6_000 if q["timestamp"] == "old" else 0)
    path = "/c/bot-1/api/v3/account?" + (urlencode(q) if unsigned else sign(q, secret))
    response = await client.get(path, headers=headers)
    body = await response.json()
    assert response.status == status, body
    if code is None:
        assert {"asset": "USDT", "free": "10000.00000000", "locked": "0.00000000"} in body[
            "balances"
        ]
        assert body["accountType"] == "SPOT" and body["canTrade"] is True
    else:
        assert body["code"] == code
    stats = state.accounting.snapshot(0)["clients"]["bot-1"]["GET /api/v3/account"]
    assert stats == {"requests": 1, "weight": 20}
