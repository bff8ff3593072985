"""Deterministic synthetic prices: a closed-form function of (seed, asset, time), no history.

Each asset's log price in USD is its reference price plus multi-octave value noise: at every
knot (every 8 s, 30 s, 2 min, ... 30 days) a pseudo-random value from a hash of
(seed, asset, octave, knot), smoothly interpolated between knots. A pair's price is
base/quote, so crosses agree with the USDT pairs. The fast octaves move a price by roughly
0.3-1 % within minutes, the slow ones by tens of percent over weeks.

Candles sample the path at fixed points inside each candle (plus wicks and volumes from a hash
of the candle), so a closed candle never changes, and the current candle is the still-open
one, sampled up to `now`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from tests.exchange.intervals import DAY, Interval
from tests.exchange.markets import Market, MarketList, stable_hash

# (period in seconds, amplitude of the log price)
OCTAVES = [
    (8, 0.001),
    (30, 0.002),
    (120, 0.004),
    (480, 0.007),
    (1800, 0.01),
    (7200, 0.015),
    (28800, 0.025),
    (129600, 0.04),
    (604800, 0.08),
    (2592000, 0.15),
]
SAMPLES = 8  # points per candle besides its open
TRADE_USD = 150.0  # average trade size, for the trade counts
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)


def mix64(x: np.ndarray) -> np.ndarray:
    """splitmix64's finalizer, elementwise on uint64 (wrapping arithmetic)."""
    x = np.asarray(x, dtype=np.uint64)
    with np.errstate(over="ignore"):
        x = x + _GOLDEN
        x = (x ^ (x >> np.uint64(30))) * _M1
        x = (x ^ (x >> np.uint64(27))) * _M2
    return x ^ (x >> np.uint64(31))


def unit(h: np.ndarray) -> np.ndarray:
    """A hash as a float in [0, 1)."""
    return (h >> np.uint64(11)).astype(np.float64) * (1.0 / 2.0**53)


def hash_with(key: int | np.ndarray, *values: np.ndarray | int) -> np.ndarray:
    """A hash of a key and some integers (array-wise)."""
    h = np.asarray(key, dtype=np.uint64)
    for v in values:
        with np.errstate(over="ignore"):
            h = mix64(h ^ mix64(np.asarray(v).astype(np.uint64)))
    return h


@dataclass
class Candles:
    """Columns of candles (each an array, prices rounded to the tick, volumes to the step)."""

    opens: np.ndarray  # open times, ms
    closes_ms: np.ndarray  # close times, ms (next open - 1)
    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    volume: np.ndarray
    quote_volume: np.ndarray
    trades: np.ndarray
    taker_base: np.ndarray
    taker_quote: np.ndarray


class PriceModel:
    """The price paths of every asset of a market list, for one seed."""

    def __init__(self, markets: MarketList, seed: int) -> None:
        self.markets = markets
        self.seed = seed
        names = list(markets.assets)
        self.asset_index = {name: i for i, name in enumerate(names)}
        keys = np.array([stable_hash(f"{seed}:{name}") for name in names], dtype=np.uint64)
        self._octave_keys = hash_with(keys[:, None], np.arange(len(OCTAVES))[None, :])
        self._log_usd = np.log([markets.assets[n].usd for n in names])
        self._volatility = np.array([markets.assets[n].volatility for n in names])
        ms = markets.markets
        self.base_idx = np.array([self.asset_index[m.base] for m in ms])
        self.quote_idx = np.array([self.asset_index[m.quote] for m in ms])
        self.market_keys = np.array(
            [stable_hash(f"{seed}:{m.symbol}") for m in ms], dtype=np.uint64
        )

    @cached_property
    def columns(self) -> dict[str, np.ndarray]:
        """Per-market parameters as arrays (index = Market.index), for vectorized quotes."""
        names = ("tick", "step", "spread", "usd_volume_day", "usd_per_quote")
        ms = self.markets.markets
        return {name: np.array([getattr(m, name) for m in ms]) for name in names}

    def log_usd(self, assets: np.ndarray, t_ms: np.ndarray) -> np.ndarray:
        """Log USD prices of assets (indices) at times t_ms (broadcast against each other)."""
        assets = np.asarray(assets)
        t_s = np.asarray(t_ms, dtype=np.float64) / 1000.0
        total = np.zeros(np.broadcast_shapes(assets.shape, t_s.shape))
        for o, (period, amplitude) in enumerate(OCTAVES):
            x = t_s / period
            knot = np.floor(x)
            f = x - knot
            smooth = f * f * (3.0 - 2.0 * f)
            k = knot.astype(np.uint64)
            key = self._octave_keys[assets, o]
            with np.errstate(over="ignore"):
                r0 = unit(mix64(key + k * _GOLDEN))
                r1 = unit(mix64(key + (k + np.uint64(1)) * _GOLDEN))
            total += amplitude * (2.0 * (r0 + (r1 - r0) * smooth) - 1.0)
        return self._log_usd[assets] + self._volatility[assets] * total

    def price(self, market: Market, t_ms: np.ndarray | int) -> np.ndarray:
        """The market's price (in its quote asset, not rounded) at times t_ms."""
        i = market.index
        base = self.log_usd(self.base_idx[i], t_ms)
        quote = self.log_usd(self.quote_idx[i], t_ms)
        return np.exp(base - quote)

    def prices_of(self, idx: np.ndarray, t_ms: np.ndarray | int) -> np.ndarray:
        """Prices of the markets idx (1-D) at t_ms (a time, or 1-D times): shape (len(idx),)
        or (len(idx), len(t_ms)). Each asset's path is computed once."""
        idx = np.asarray(idx).reshape(-1)
        t = np.atleast_1d(np.asarray(t_ms, dtype=np.float64)).reshape(-1)
        assets, inverse = np.unique(
            np.concatenate([self.base_idx[idx], self.quote_idx[idx]]), return_inverse=True
        )
        logs = self.log_usd(assets[:, None], t[None, :])[inverse]
        out = np.exp(logs[: len(idx)] - logs[len(idx) :])
        return out[:, 0] if np.ndim(t_ms) == 0 else out

    def candles(self, market: Market, interval: Interval, bounds: np.ndarray, now_ms: int):
        """The candles between consecutive `bounds` (from intervals.select), as of now_ms."""
        opens, ends = bounds[:-1], bounds[1:]
        length = (ends - opens).astype(np.float64)
        frac = np.linspace(0.0, 1.0, SAMPLES + 1)
        times = np.minimum(opens[:, None] + length[:, None] * frac[None, :], now_ms)
        path = self.price(market, times)
        elapsed = np.clip((now_ms - opens) / length, 0.0, 1.0)
        h = hash_with(self.market_keys[market.index], opens, interval.ms)
        u = [unit(h := mix64(h)) for _ in range(4)]
        wick = min(0.0004 * math.sqrt(interval.ms / 60_000), 0.03) * elapsed
        o, c = path[:, 0], path[:, -1]
        hi = path.max(axis=1) * (1.0 + wick * u[0])
        lo = path.min(axis=1) * (1.0 - wick * u[1])
        usd = market.usd_volume_day * (interval.ms / DAY) * (0.4 + 1.2 * u[2]) * elapsed
        mean = (o + hi + lo + c) / 4.0
        volume = _round(usd / (mean * market.usd_per_quote), market.step)
        taker = _round(volume * (0.35 + 0.3 * u[3]), market.step)
        tick = market.tick
        return Candles(
            opens=opens,
            closes_ms=ends - 1,
            open=_round(o, tick),
            high=_round(hi, tick),
            low=_round(lo, tick),
            close=_round(c, tick),
            volume=volume,
            quote_volume=volume * mean,
            trades=np.maximum(usd / TRADE_USD, elapsed > 0).astype(np.int64),
            taker_base=taker,
            taker_quote=taker * mean,
        )


def _round(x: np.ndarray, step: float) -> np.ndarray:
    return np.round(x / step) * step
