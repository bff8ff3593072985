"""The emulator's market list: real majors against USDT and a few real crosses, then synthetic
but valid assets (uppercase letters) across several quotes, like Binance spot.

The list depends only on its length, never on the price seed, so `pairs(n)` and a bot's
whitelist agree with any emulator that serves at least as many markets.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from functools import lru_cache

DEFAULT_COUNT = 2000

# fmt: off
# (asset, reference price in USD, relative volatility): the majors, then the quote assets.
MAJORS = [
    ("BTC", 95000.0, 0.6), ("ETH", 3300.0, 0.8), ("BNB", 650.0, 0.7), ("SOL", 180.0, 1.0),
    ("XRP", 2.3, 1.0), ("ADA", 0.8, 1.0), ("DOGE", 0.25, 1.1), ("TRX", 0.25, 0.8),
    ("AVAX", 30.0, 1.0), ("LINK", 18.0, 1.0), ("DOT", 6.0, 1.0), ("POL", 0.5, 1.0),
    ("LTC", 100.0, 0.9), ("SHIB", 0.00002, 1.1), ("BCH", 400.0, 0.9), ("UNI", 10.0, 1.0),
    ("ATOM", 7.0, 1.0), ("XLM", 0.35, 0.9), ("ETC", 25.0, 0.9), ("FIL", 5.0, 1.0),
    ("APT", 9.0, 1.1), ("ARB", 0.6, 1.1), ("OP", 1.8, 1.1), ("NEAR", 5.0, 1.1),
    ("ICP", 9.0, 1.0), ("HBAR", 0.25, 1.0), ("INJ", 20.0, 1.2), ("SUI", 3.5, 1.2),
    ("PEPE", 0.00001, 1.3), ("TON", 5.0, 1.0), ("AAVE", 250.0, 1.0), ("TIA", 6.0, 1.2),
]
QUOTES = {"USDT": 1.0, "FDUSD": 1.0, "EUR": 1.08, "TRY": 0.029}
QUOTE_VOLATILITY = {"USDT": 0.0, "FDUSD": 0.002, "EUR": 0.05, "TRY": 0.1}
MIN_NOTIONAL = {"USDT": 5, "FDUSD": 5, "EUR": 5, "TRY": 100, "BTC": 0.0001, "ETH": 0.001,
                "BNB": 0.01}
# Real crosses between the majors and the other quotes, listed after the majors' USDT pairs.
CROSSES = [
    "ETH/BTC", "BNB/BTC", "SOL/BTC", "XRP/BTC", "ADA/BTC", "DOGE/BTC", "LINK/BTC", "DOT/BTC",
    "LTC/BTC", "AVAX/BTC", "BNB/ETH", "SOL/ETH", "XRP/ETH", "LINK/ETH", "SOL/BNB", "XRP/BNB",
    "ADA/BNB", "BTC/FDUSD", "ETH/FDUSD", "SOL/FDUSD", "BNB/FDUSD", "FDUSD/USDT", "BTC/EUR",
    "ETH/EUR", "SOL/EUR", "XRP/EUR", "EUR/USDT", "BTC/TRY", "ETH/TRY", "BNB/TRY", "SOL/TRY",
    "USDT/TRY",
]
# How often a synthetic asset also trades against each quote besides USDT.
EXTRA_QUOTES = [("BTC", 0.45), ("ETH", 0.15), ("BNB", 0.15), ("FDUSD", 0.15), ("TRY", 0.15),
                ("EUR", 0.05)]
# fmt: on
# ccxt renames these codes (commonCurrencies), so a synthetic asset must not be called so.
RESERVED = {"XBT", "BCHSV", "BCC", "YOYO", "YOYOW", "BSV", "USD", "USDC"}
FIRST_LISTING_MS = 1502928000000  # 2017-08-17, Binance's first spot candles
DAY_MS = 86_400_000
MIN_PRICE = 1e-5  # at least 1,000 ticks of 1e-8; cheaper crosses are not listed


def stable_hash(text: str) -> int:
    """A 64-bit hash of text that is the same in every process (unlike hash())."""
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "little")


def _unit(text: str) -> float:
    return stable_hash(text) / 2.0**64


@dataclass(frozen=True)
class Asset:
    name: str
    usd: float  # reference price in USD; the price path wanders around it
    volatility: float


@dataclass(frozen=True)
class Market:
    index: int
    symbol: str  # Binance's id, e.g. BTCUSDT
    base: str
    quote: str
    price: float  # reference price in the quote asset
    tick: float
    step: float
    min_notional: float
    listed_ms: int
    spread: float  # best ask - best bid, relative to the price
    usd_volume_day: float
    usd_per_quote: float

    @property
    def pair(self) -> str:
        """FreqTrade's and ccxt's name, e.g. BTC/USDT."""
        return f"{self.base}/{self.quote}"


class MarketList:
    """The markets in listing order, by Binance symbol, and the assets they trade."""

    def __init__(self, markets: list[Market], assets: dict[str, Asset]) -> None:
        self.markets = markets
        self.assets = assets
        self.by_symbol = {m.symbol: m for m in markets}

    def usdt_pairs(self, n: int) -> list[str]:
        """The first n USDT pairs (majors first, no stablecoin or fiat), as FreqTrade names
        them."""
        found = [m.pair for m in self.markets if m.quote == "USDT" and m.base not in QUOTES]
        if len(found) < n:
            raise ValueError(f"only {len(found)} USDT pairs among {len(self.markets)} markets")
        return found[:n]


def _synthetic_name(i: int, taken: set[str]) -> str:
    for attempt in range(1000):
        h = stable_hash(f"asset:{i}:{attempt}")
        length, h = 3 + h % 4, h >> 2
        letters = []
        for _ in range(length):
            letters.append(chr(ord("A") + h % 26))
            h //= 26
        name = "".join(letters)
        if name not in taken:
            return name
    raise RuntimeError(f"no free synthetic name for asset {i}")


def _pairs_in_order(assets: dict[str, Asset]):
    """Every (base, quote) in listing order: majors/USDT, the crosses, then synthetic assets
    with their USDT pair and, sometimes, other quotes. Adds synthetic assets as it goes."""
    for name, *_ in MAJORS:
        yield name, "USDT"
    for cross in CROSSES:
        yield tuple(cross.split("/"))
    taken = set(assets) | RESERVED
    for i in range(10**6):
        name = _synthetic_name(i, taken)
        taken.add(name)
        usd = 10 ** (-4 + 6.5 * _unit(f"usd:{name}"))  # 0.0001 .. ~300 USD
        assets[name] = Asset(name, usd, 0.8 + 0.8 * _unit(f"vol:{name}"))
        yield name, "USDT"
        for quote, share in EXTRA_QUOTES:
            if _unit(f"quote:{name}:{quote}") < share:
                yield name, quote


def _power_of_ten(x: float, lo: int, hi: int) -> float:
    """The power of ten at or below x, between 10**lo and 10**hi (as exact as a float is)."""
    return float(f"1e{min(max(math.floor(math.log10(x)), lo), hi)}")


def _market(index: int, base: Asset, quote: Asset, major: bool) -> Market:
    price = base.usd / quote.usd
    key = f"{base.name}{quote.name}"
    if base.name in ("BTC", "ETH", "BNB"):
        days_listed = 0
    elif major:
        days_listed = int(1500 * _unit(f"listed:{key}"))
    else:
        days_listed = 500 + int(2300 * _unit(f"listed:{key}"))
    return Market(
        index=index,
        symbol=key,
        base=base.name,
        quote=quote.name,
        price=price,
        tick=_power_of_ten(price * 1e-5, -8, -2),
        step=_power_of_ten(0.1 / base.usd, -8, 0),
        min_notional=MIN_NOTIONAL[quote.name],
        listed_ms=FIRST_LISTING_MS + days_listed * DAY_MS,
        spread=(2e-5 if major else 2e-4) * (1 + 4 * _unit(f"spread:{key}")),
        usd_volume_day=10 ** ((7.5 if major else 5) + 2.5 * _unit(f"volume:{key}")),
        usd_per_quote=quote.usd,
    )


@lru_cache(maxsize=8)
def build_markets(count: int = DEFAULT_COUNT) -> MarketList:
    """The first `count` markets (at least 1)."""
    if count < 1:
        raise ValueError("at least one market")
    assets = {name: Asset(name, usd, vol) for name, usd, vol in MAJORS}
    assets.update({q: Asset(q, usd, QUOTE_VOLATILITY[q]) for q, usd in QUOTES.items()})
    majors = set(assets)
    markets: list[Market] = []
    seen: set[str] = set()
    for base, quote in _pairs_in_order(assets):
        if len(markets) == count:
            break
        if base + quote in seen or assets[base].usd / assets[quote].usd < MIN_PRICE:
            continue
        seen.add(base + quote)
        markets.append(_market(len(markets), assets[base], assets[quote], base in majors))
    return MarketList(markets, assets)


def pairs(n: int, markets: int = DEFAULT_COUNT) -> list[str]:
    """n valid USDT pairs of an emulator serving `markets` markets, majors first."""
    return build_markets(markets).usdt_pairs(n)
