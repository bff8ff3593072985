"""Binance kline intervals: which candle a moment falls in, and the candles of a time range.

Fixed intervals (1s up to 3d) are aligned to the Unix epoch like Binance's, weeks open on
Monday 00:00 UTC, and months on the first day of the calendar month.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np

SECOND = 1000
MINUTE = 60 * SECOND
HOUR = 60 * MINUTE
DAY = 24 * HOUR

FIXED_MS = {
    "1s": SECOND,
    "1m": MINUTE,
    "3m": 3 * MINUTE,
    "5m": 5 * MINUTE,
    "15m": 15 * MINUTE,
    "30m": 30 * MINUTE,
    "1h": HOUR,
    "2h": 2 * HOUR,
    "4h": 4 * HOUR,
    "6h": 6 * HOUR,
    "8h": 8 * HOUR,
    "12h": 12 * HOUR,
    "1d": DAY,
    "3d": 3 * DAY,
    "1w": 7 * DAY,
}
NAMES = (*FIXED_MS, "1M")
WEEK_OFFSET = 4 * DAY  # 1970-01-01 was a Thursday; Binance's weeks open on Monday


def _month_index(ms: int) -> int:
    d = datetime.fromtimestamp(ms / 1000, tz=UTC)
    return d.year * 12 + d.month - 1


def _month_open(index: int) -> int:
    return int(datetime(index // 12, index % 12 + 1, 1, tzinfo=UTC).timestamp() * 1000)


@dataclass(frozen=True)
class Interval:
    """One kline interval; `ms` is its nominal length (30 days for a month)."""

    name: str

    @property
    def ms(self) -> int:
        return FIXED_MS.get(self.name, 30 * DAY)

    @property
    def _offset(self) -> int:
        return WEEK_OFFSET if self.name == "1w" else 0

    def floor(self, t_ms: int) -> int:
        """The open time of the candle that contains t_ms."""
        if self.name == "1M":
            return _month_open(_month_index(t_ms))
        return (t_ms - self._offset) // self.ms * self.ms + self._offset

    def ceil(self, t_ms: int) -> int:
        """The open time of the first candle that opens at or after t_ms."""
        start = self.floor(t_ms)
        return start if start == t_ms else self.shift(start, 1)

    def shift(self, open_ms: int, n: int) -> int:
        """The open time n candles after (or before, n < 0) the candle opened at open_ms."""
        if self.name == "1M":
            return _month_open(_month_index(open_ms) + n)
        return open_ms + n * self.ms

    def count_between(self, first_open: int, last_open: int) -> int:
        """How many candles open from first_open to last_open, both included."""
        if last_open < first_open:
            return 0
        if self.name == "1M":
            return _month_index(last_open) - _month_index(first_open) + 1
        return (last_open - first_open) // self.ms + 1

    def opens(self, first_open: int, count: int) -> np.ndarray:
        """The open times of `count` consecutive candles from first_open, and the next one's
        (count + 1 values, so that candle i spans opens[i] .. opens[i + 1])."""
        if self.name == "1M":
            first = _month_index(first_open)
            return np.array([_month_open(first + i) for i in range(count + 1)], dtype=np.int64)
        return first_open + np.arange(count + 1, dtype=np.int64) * self.ms


def parse(name: str) -> Interval | None:
    """The Interval called `name` (case-sensitive, as Binance: `1m` minute, `1M` month)."""
    return Interval(name) if name in NAMES else None


def select(
    interval: Interval,
    *,
    now_ms: int,
    listed_ms: int,
    limit: int,
    start_ms: int | None = None,
    end_ms: int | None = None,
) -> np.ndarray:
    """The candles /api/v3/klines answers, as Binance picks them: open times from startTime
    (the first candle opening at or after it) or else the newest ones up to endTime, at most
    `limit`, never before the listing and never past the current, still-open candle.

    Returns count + 1 boundaries (see Interval.opens), empty when there is no candle.
    """
    newest = interval.floor(now_ms)
    if end_ms is not None:
        newest = min(newest, interval.floor(end_ms))
    oldest = interval.floor(listed_ms)
    if start_ms is not None:
        first = max(interval.ceil(start_ms), oldest)
        count = min(limit, interval.count_between(first, newest))
    else:
        count = min(limit, interval.count_between(oldest, newest))
        first = interval.shift(newest, -(count - 1)) if count > 0 else newest
    if count <= 0:
        return np.empty(0, dtype=np.int64)
    return interval.opens(first, count)
