"""How long a public answer may be served again: pure decisions on the answer and the time.

- `live` (server time, ping): never kept, only shared by the requests that wait for it;
- `fixed` (the market list): the table's lifetime;
- `quote` (tickers, order books): the configured quote lifetime;
- `candles`: an answer whose candles are all closed, for a range that cannot grow (an
  `endTime`, or a `startTime` with a full page), never changes: kept for good (until the
  cache needs the room). Any other is kept until its last candle closes (then it lacks the
  next one) or for the configured candle lifetime, whichever comes first.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass

from agent.marketdata.table import Endpoint

FOREVER = math.inf
MAX_CANDLE_ROWS = 1000  # what Binance answers at most, whatever `limit` says


@dataclass(frozen=True, slots=True)
class Lifetimes:
    """The configured lifetimes, in milliseconds."""

    quote_ms: int = 2000
    candle_ms: int = 5000


def expires_at(
    endpoint: Endpoint, params: Mapping[str, str], body: bytes, now: float, lifetimes: Lifetimes
) -> float:
    """Until when (wall-clock seconds) a successful answer may be served; `now`: not kept."""
    if endpoint.cache == "fixed":
        return now + endpoint.ttl_ms / 1000
    if endpoint.cache == "quote":
        return now + lifetimes.quote_ms / 1000
    if endpoint.cache == "candles":
        return candles_expire_at(endpoint, params, body, now, lifetimes.candle_ms)
    return now


def candles_expire_at(
    endpoint: Endpoint, params: Mapping[str, str], body: bytes, now: float, ttl_ms: int
) -> float:
    short = now + ttl_ms / 1000
    found = last_close_ms(body, endpoint.close_time_field)
    if found is None:
        return short  # no candle (yet), or an answer not shaped like candles
    rows, close_ms = found
    next_opens = (close_ms + 1) / 1000  # the candle after the last one opens
    if (close_ms + 1 + endpoint.closed_grace_ms) / 1000 > now:
        return min(short, next_opens)
    return FOREVER if _range_is_fixed(params, rows, endpoint.default_limit) else short


def _range_is_fixed(params: Mapping[str, str], rows: int, default_limit: int) -> bool:
    """Whether later candles can never join this answer: the request ends at a time, or it
    starts at one and got as many rows as it asked for."""
    if params.get("endTime", "").isdigit():
        return True
    if not params.get("startTime", "").isdigit():
        return False
    limit = params.get("limit", "")
    wanted = int(limit) if limit.isdigit() else default_limit
    return rows >= min(wanted, MAX_CANDLE_ROWS)


def last_close_ms(body: bytes, field: int) -> tuple[int, int] | None:
    """(rows, close time of the last row) of a compact JSON list of candle rows, read
    without parsing the whole answer; None when it has no rows or another shape."""
    body = body.strip()
    if not body.startswith(b"[[") or not body.endswith(b"]]"):
        return None
    start = body.rfind(b"[", 0, len(body) - 1)
    try:
        row = json.loads(body[start:-1])
        close = row[field]
    except (ValueError, IndexError, TypeError):
        return None
    if type(close) is not int:
        return None
    return body.count(b"],[") + 1, close
