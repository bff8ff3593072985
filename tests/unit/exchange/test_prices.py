"""Deterministic prices: candles aligned to now, consistent OHLC, books and tickers."""

import time
from datetime import UTC, datetime

import numpy as np
import pytest

from tests.exchange import intervals, quotes
from tests.exchange.markets import build_markets
from tests.exchange.prices import PriceModel
from tests.unit.exchange.conftest import NOW_MS

MARKETS = build_markets(2000)
BTC = MARKETS.by_symbol["BTCUSDT"]
MINUTE = intervals.parse("1m")


def candles(model, market, name, now_ms=NOW_MS, limit=1000, **kw):
    interval = intervals.parse(name)
    bounds = intervals.select(
        interval, now_ms=now_ms, listed_ms=market.listed_ms, limit=limit, **kw
    )
    return model.candles(market, interval, bounds, now_ms)


def test_prices_depend_only_on_seed_symbol_and_time():
    times = NOW_MS - np.arange(0, 10**7, 12_345)
    a, b, other = PriceModel(MARKETS, 7), PriceModel(MARKETS, 7), PriceModel(MARKETS, 8)
    for m in MARKETS.markets[::97]:
        assert np.array_equal(a.price(m, times), b.price(m, times))
        assert not np.allclose(a.price(m, times), other.price(m, times))
    all_now = a.prices_of(np.arange(len(MARKETS.markets)), NOW_MS)
    assert all_now[BTC.index] == a.price(BTC, NOW_MS)


def test_crosses_agree_with_the_usdt_pairs():
    model = PriceModel(MARKETS, 1)
    eth_btc = model.price(MARKETS.by_symbol["ETHBTC"], NOW_MS)
    eth, btc = (model.price(MARKETS.by_symbol[s], NOW_MS) for s in ("ETHUSDT", "BTCUSDT"))
    assert eth_btc == pytest.approx(eth / btc, rel=1e-12)


def test_the_newest_candle_is_the_current_open_one():
    model = PriceModel(MARKETS, 1)
    c = candles(model, BTC, "1m")
    assert len(c.opens) == 1000
    assert c.opens[-1] == NOW_MS // 60_000 * 60_000 and c.closes_ms[-1] == c.opens[-1] + 59_999
    assert np.all(np.diff(c.opens) == 60_000)
    last = round(float(model.price(BTC, NOW_MS)) / BTC.tick) * BTC.tick
    assert c.close[-1] == pytest.approx(last)
    # and the wall clock: the emulator serves the candle that is open right now
    now = int(time.time() * 1000)
    assert candles(model, BTC, "1m", now_ms=now, limit=2).opens[-1] == now // 60_000 * 60_000


def test_closed_candles_never_change():
    model = PriceModel(MARKETS, 1)
    earlier = candles(model, BTC, "1m", limit=100)
    later = candles(model, BTC, "1m", now_ms=NOW_MS + 5 * 60_000, limit=100)
    shift = 5
    for column in ("opens", "open", "high", "low", "close", "volume", "trades"):
        a, b = getattr(earlier, column)[shift:-1], getattr(later, column)[: -1 - shift]
        assert np.array_equal(a, b), column


@pytest.mark.parametrize("name", intervals.NAMES)
def test_ohlcv_is_consistent_for_every_interval(name):
    model = PriceModel(MARKETS, 3)
    for m in (BTC, MARKETS.markets[500], MARKETS.by_symbol["ETHBTC"]):
        c = candles(model, m, name, limit=300)
        assert len(c.opens) > 0 and np.all(np.diff(c.opens) > 0)
        assert np.all(c.low <= np.minimum(c.open, c.close))
        assert np.all(c.high >= np.maximum(c.open, c.close))
        assert np.all(c.volume >= 0) and np.all(c.taker_base <= c.volume)


def test_weeks_open_on_monday_and_months_on_the_first():
    model = PriceModel(MARKETS, 1)
    for t in candles(model, BTC, "1w", limit=20).opens:
        d = datetime.fromtimestamp(t / 1000, UTC)
        assert (d.weekday(), d.hour, d.minute) == (0, 0, 0)
    for t in candles(model, BTC, "1M", limit=20).opens:
        d = datetime.fromtimestamp(t / 1000, UTC)
        assert (d.day, d.hour) == (1, 0)


def test_klines_selection_like_binance():
    at = NOW_MS // 60_000 * 60_000
    select = lambda **kw: intervals.select(MINUTE, now_ms=NOW_MS, listed_ms=0, **kw)  # noqa: E731
    assert select(limit=3)[0] == at - 2 * 60_000  # the newest 3
    assert select(limit=10, start_ms=at - 90_000)[0] == at - 60_000  # opening at/after start
    assert len(select(limit=10, start_ms=at - 90_000)) == 3  # ... up to now: 2 candles + end
    assert select(limit=2, end_ms=at - 60_001)[-2] == at - 120_000  # opening at/before end
    assert len(select(limit=5, start_ms=NOW_MS + 60_000)) == 0  # the future: nothing
    listed = intervals.select(MINUTE, now_ms=NOW_MS, listed_ms=at - 60_000, limit=50)
    assert listed[0] == at - 60_000 and len(listed) == 3  # nothing before the listing


def test_prices_move_enough_for_a_quick_strategy():
    model = PriceModel(MARKETS, 1)
    moves, rises = [], []
    for pair in MARKETS.usdt_pairs(20):
        c = candles(model, MARKETS.by_symbol[pair.replace("/", "")], "1m")
        moves.append(np.median(np.abs(np.log(c.close[5:] / c.close[:-5]))))
        rises.append(np.mean(np.diff(c.close) > 0))
    assert 0.001 < np.median(moves) < 0.01  # ~0.1-1 % within 5 minutes
    assert 0.35 < np.mean(rises) < 0.65


def test_books_sit_around_the_last_price():
    model = PriceModel(MARKETS, 1)
    for m in (BTC, MARKETS.markets[700], MARKETS.by_symbol["SHIBUSDT"]):
        book = quotes.book(model, m, NOW_MS, 100)
        bids, asks = np.array(book.bids), np.array(book.asks)
        assert len(bids) == len(asks) == 100
        assert bids[0, 0] <= book.last < asks[0, 0]
        assert np.all(np.diff(bids[:, 0]) < 0) and np.all(np.diff(asks[:, 0]) > 0)
        assert np.all(bids[:, 1] > 0) and np.all(asks[:, 1] > 0)
        assert (asks[0, 0] - bids[0, 0]) / book.last < 0.01
        top = quotes.book_tickers(model, [m], NOW_MS)[0]
        assert float(top["bidPrice"]) == pytest.approx(bids[0, 0])
        assert float(top["askQty"]) == pytest.approx(asks[0, 1])
        ticker = quotes.ticker_24h(model, [m], NOW_MS)[0]
        assert float(ticker["lastPrice"]) == pytest.approx(book.last)
        assert float(ticker["lowPrice"]) <= book.last <= float(ticker["highPrice"])
        assert ticker["bidPrice"] == top["bidPrice"]


def test_a_bot_start_gets_its_1000_candles_for_each_pair():
    """1,000 candles for each of 20 pairs, as a bot fetches at start (how long it takes is
    the emulator's, bench/ measures it, not a test)."""
    model = PriceModel(MARKETS, 1)
    for pair in MARKETS.usdt_pairs(20):
        assert len(candles(model, MARKETS.by_symbol[pair.replace("/", "")], "1m").opens) == 1000
