"""The emulator's settings and the state its handlers share."""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

from tests.exchange.accounting import Accounting, WeightBudget
from tests.exchange.exchange_info import ExchangeInfo
from tests.exchange.faults import Faults
from tests.exchange.markets import DEFAULT_COUNT, build_markets
from tests.exchange.prices import PriceModel

CLOSED_KLINES = 128  # ranges of closed candles kept serialized (~160 kB per 1,000 candles)
DEFAULT_BALANCES = {
    "USDT": "10000.00000000",
    "BTC": "0.50000000",
    "ETH": "5.00000000",
    "BNB": "10.00000000",
}


@dataclass(frozen=True)
class Settings:
    host: str = "127.0.0.1"
    port: int = 0  # 0: any free port (see ExchangeEmulator.url)
    markets: int = DEFAULT_COUNT
    seed: int = 1
    api_key: str = "emulator-key"
    api_secret: str = "emulator-secret"
    weight_limit: int = 6000  # per remote address and minute; 0 = unlimited
    ban_seconds: float = 60.0
    ban_after: int = 3  # 429s in a minute before the next request over the limit is banned
    balances: dict[str, str] = field(default_factory=lambda: dict(DEFAULT_BALANCES))
    hang_max_s: float = 300.0  # a `timeout` fault answers 504 after this, if nobody gave up


class State:
    """Markets, prices, counters, the weight budget and the faults of one emulator."""

    def __init__(self, settings: Settings, clock: Callable[[], int] | None = None) -> None:
        """`clock`: the time in ms (default: the wall clock), for tests that need a fixed one."""
        self.settings = settings
        self._clock = clock or (lambda: int(time.time() * 1000))
        self.markets = build_markets(settings.markets)
        self.model = PriceModel(self.markets, settings.seed)
        self.exchange_info = ExchangeInfo(self.markets.markets, settings.weight_limit)
        self.accounting = Accounting(self.now_ms())
        self.budget = WeightBudget(settings.weight_limit, settings.ban_seconds, settings.ban_after)
        self.faults = Faults(settings.seed)
        self.stopping = asyncio.Event()
        self._cache: dict[tuple, bytes] = {}
        self._closed_klines: OrderedDict[tuple, list[str]] = OrderedDict()

    def now_ms(self) -> int:
        return self._clock()

    def cached(self, key: tuple, now_ms: int, build) -> bytes:
        """An answer for all symbols, computed at most once per second."""
        key = (*key, now_ms // 1000)
        if key not in self._cache:
            self._cache = {k: v for k, v in self._cache.items() if k[-1] == key[-1]}
            self._cache[key] = build()
        return self._cache[key]

    def closed_klines(self, key: tuple, build: Callable[[], list[str]]) -> list[str]:
        """Serialized closed candles, kept for the last CLOSED_KLINES requests' ranges."""
        if key in self._closed_klines:
            self._closed_klines.move_to_end(key)
        else:
            self._closed_klines[key] = build()
            while len(self._closed_klines) > CLOSED_KLINES:
                self._closed_klines.popitem(last=False)
        return self._closed_klines[key]
