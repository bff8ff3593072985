"""Order books and tickers around the current price of the synthetic path.

The last price is the path at `now` rounded to the tick (the close of the open 1m candle); the
best bid and ask sit around it with the market's spread; deeper levels are 1-3 ticks apart
with sizes from a hash of (market, second, level), so a book changes every second and the
first level of /depth always equals /ticker/bookTicker at the same moment.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tests.exchange.intervals import DAY
from tests.exchange.markets import Market
from tests.exchange.prices import TRADE_USD, PriceModel, hash_with, mix64, unit

TICKER_SAMPLES = 96  # the 24h ticker's high/low come from the path every 15 minutes


@dataclass
class Book:
    last: float
    bids: list[tuple[float, float]]  # (price, quantity), best first
    asks: list[tuple[float, float]]


def _levels(model: PriceModel, idx: np.ndarray, now_ms: int, limit: int):
    """Last price and both sides' level prices and quantities, shape (len(idx), limit)."""
    col = {k: v[idx][:, None] for k, v in model.columns.items()}
    price = model.prices_of(idx, now_ms)[:, None]
    tick, step = col["tick"], col["step"]
    last = np.round(price / tick)
    spread = np.maximum(1.0, np.round(price * col["spread"] / tick))
    best = {-1: last - spread // 2, +1: last - spread // 2 + spread}
    key = hash_with(model.market_keys[idx][:, None], now_ms // 1000)
    levels = np.arange(limit)[None, :]
    level_usd = np.clip(col["usd_volume_day"] / 20_000, 100.0, 50_000.0)
    sides = {}
    for sign, best_ticks in best.items():
        h = hash_with(key, levels, sign + 2)
        u_gap, u_size = unit(h), unit(mix64(h))
        gaps = 1.0 + (u_gap < 0.3) + (u_gap < 0.1)
        gaps[:, 0] = 0.0
        ticks = best_ticks + sign * np.cumsum(gaps, axis=1)
        prices = ticks * tick
        usd = level_usd * (0.2 + 2.0 * u_size**2) * (1.0 + 0.02 * levels)
        with np.errstate(divide="ignore"):
            qty = np.maximum(np.floor(usd / (prices * col["usd_per_quote"]) / step), 1.0)
        sides[sign] = (ticks, prices, qty * step)
    return (last * tick)[:, 0], sides[-1], sides[+1]


def book(model: PriceModel, market: Market, now_ms: int, limit: int) -> Book:
    """The order book's best `limit` levels on each side at now_ms."""
    last, bids, asks = _levels(model, np.array([market.index]), now_ms, limit)

    def side(ticks, prices, qty):
        keep = ticks[0] > 0
        return list(zip(prices[0][keep].tolist(), qty[0][keep].tolist(), strict=True))

    return Book(last=float(last[0]), bids=side(*bids), asks=side(*asks))


def book_tickers(model: PriceModel, markets: list[Market], now_ms: int) -> list[dict]:
    """/api/v3/ticker/bookTicker's answers: the first level of each book."""
    idx = np.array([m.index for m in markets])
    _, bids, asks = _levels(model, idx, now_ms, 1)
    rows = zip(markets, bids[1][:, 0], bids[2][:, 0], asks[1][:, 0], asks[2][:, 0], strict=True)
    return [
        {
            "symbol": m.symbol,
            "bidPrice": f"{bid:.8f}",
            "bidQty": f"{bid_qty:.8f}",
            "askPrice": f"{ask:.8f}",
            "askQty": f"{ask_qty:.8f}",
        }
        for m, bid, bid_qty, ask, ask_qty in rows
    ]


def price_tickers(model: PriceModel, markets: list[Market], now_ms: int) -> list[dict]:
    """/api/v3/ticker/price's answers: the last prices."""
    idx = np.array([m.index for m in markets])
    ticks = model.columns["tick"][idx]
    last = np.round(model.prices_of(idx, now_ms) / ticks) * ticks
    return [{"symbol": m.symbol, "price": f"{p:.8f}"} for m, p in zip(markets, last, strict=True)]


def ticker_24h(model: PriceModel, markets: list[Market], now_ms: int) -> list[dict]:
    """Binance's full 24hr tickers of `markets` at now_ms (vectorized over the markets)."""
    idx = np.array([m.index for m in markets])
    times = now_ms - DAY + np.arange(TICKER_SAMPLES + 1) * (DAY // TICKER_SAMPLES)
    paths = model.prices_of(idx, times)
    col = {k: v[idx] for k, v in model.columns.items()}
    tick, step = col["tick"], col["step"]
    last, bids, asks = _levels(model, idx, now_ms, 1)
    open_ = np.round(paths[:, 0] / tick) * tick
    high = np.maximum(np.round(paths.max(axis=1) * 1.002 / tick) * tick, last)
    low = np.minimum(np.round(paths.min(axis=1) * 0.998 / tick) * tick, last)
    wavg = paths.mean(axis=1)
    u = unit(hash_with(model.market_keys[idx], now_ms // DAY))
    usd = col["usd_volume_day"] * (0.7 + 0.6 * u)
    volume = np.round(usd / (wavg * col["usd_per_quote"]) / step) * step
    trades = np.maximum(usd / TRADE_USD, 1).astype(np.int64)
    last_qty = np.maximum(np.round(volume / trades / step), 1) * step
    first_id = (u * 1e9).astype(np.int64) + now_ms // 1000 * 7
    columns = zip(
        markets,
        last,
        open_,
        high,
        low,
        wavg,
        volume,
        trades,
        last_qty,
        first_id,
        bids[1][:, 0],
        bids[2][:, 0],
        asks[1][:, 0],
        asks[2][:, 0],
        strict=True,
    )
    return [
        {
            "symbol": m.symbol,
            "priceChange": f"{lp - op:.8f}",
            "priceChangePercent": f"{(lp / op - 1) * 100:.3f}",
            "weightedAvgPrice": f"{wa:.8f}",
            "prevClosePrice": f"{op:.8f}",
            "lastPrice": f"{lp:.8f}",
            "lastQty": f"{lq:.8f}",
            "bidPrice": f"{bp:.8f}",
            "bidQty": f"{bq:.8f}",
            "askPrice": f"{ap:.8f}",
            "askQty": f"{aq:.8f}",
            "openPrice": f"{op:.8f}",
            "highPrice": f"{hi:.8f}",
            "lowPrice": f"{lo:.8f}",
            "volume": f"{vol:.8f}",
            "quoteVolume": f"{vol * wa:.8f}",
            "openTime": now_ms - DAY,
            "closeTime": now_ms,
            "firstId": int(fid),
            "lastId": int(fid + n - 1),
            "count": int(n),
        }
        for m, lp, op, hi, lo, wa, vol, n, lq, fid, bp, bq, ap, aq in columns
    ]
