"""Binance spot's public market-data endpoints: each a handler and a weight (Binance's)."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from aiohttp import web

from tests.exchange import errors, intervals, quotes
from tests.exchange.markets import Market
from tests.exchange.state import State

Handler = Callable[[State, web.Request], Any]  # returns bytes, or something to JSON-encode
Weight = Callable[[Mapping[str, str]], int]
SYMBOLS_LEGAL = '^\\[("[A-Z0-9-_.]{1,20}"(,"[A-Z0-9-_.]{1,20}"){0,}){0,1}\\]$'
SYMBOLS_RE = re.compile(SYMBOLS_LEGAL)


@dataclass(frozen=True)
class Endpoint:
    path: str
    handler: Handler
    weight: Weight
    method: str = "GET"


def _int(query: Mapping[str, str], name: str, default: int | None = None) -> int | None:
    raw = query.get(name)
    if raw is None or raw == "":
        return default
    if not re.fullmatch(r"-?[0-9]{1,20}", raw):
        raise errors.illegal_chars(name, "^[0-9]{1,20}$")
    return int(raw)


def market(state: State, query: Mapping[str, str]) -> Market:
    symbol = query.get("symbol")
    if not symbol:
        raise errors.mandatory("symbol")
    found = state.markets.by_symbol.get(symbol)
    if found is None:
        raise errors.invalid_symbol()
    return found


def selected(state: State, query: Mapping[str, str]) -> list[Market] | None:
    """The markets of ?symbol= or ?symbols=["A","B"]; None for all of them."""
    if "symbol" in query and "symbols" in query:
        raise errors.bad_combination()
    if "symbol" in query:
        return [market(state, query)]
    if "symbols" not in query:
        return None
    raw = query["symbols"].replace(" ", "")
    if not SYMBOLS_RE.fullmatch(raw):
        raise errors.illegal_chars("symbols", SYMBOLS_LEGAL)
    names = json.loads(raw)
    if not names:
        raise errors.mandatory("symbols")
    if any(n not in state.markets.by_symbol for n in names):
        raise errors.invalid_symbol()
    return [state.markets.by_symbol[n] for n in dict.fromkeys(names)]


def _symbol_count(query: Mapping[str, str]) -> int | None:
    if "symbol" in query:
        return 1
    try:
        return len(json.loads(query["symbols"]))
    except (KeyError, ValueError, TypeError):
        return None


def ping(state: State, request: web.Request) -> dict:
    return {}


def server_time(state: State, request: web.Request) -> dict:
    return {"serverTime": state.now_ms()}


def exchange_info(state: State, request: web.Request) -> bytes | dict:
    chosen = selected(state, request.query)
    if chosen is None:
        return state.exchange_info.all_bytes(state.now_ms())
    return state.exchange_info.some(chosen, state.now_ms())


def klines(state: State, request: web.Request) -> bytes:
    q = request.query
    m = market(state, q)
    if not q.get("interval"):
        raise errors.mandatory("interval")
    interval = intervals.parse(q["interval"])
    if interval is None:
        raise errors.invalid_interval()
    limit = min(max(_int(q, "limit", 500), 1), 1000)
    start, end = _int(q, "startTime"), _int(q, "endTime")
    if start is not None and end is not None and start > end:
        raise errors.BinanceError(400, -1023, "Start time is greater than end time.")
    now = state.now_ms()
    bounds = intervals.select(
        interval, now_ms=now, listed_ms=m.listed_ms, limit=limit, start_ms=start, end_ms=end
    )
    if len(bounds) == 0:
        return b"[]"
    # Closed candles never change: bots that start together share their serialized rows.
    closed = int(np.searchsorted(bounds[1:], now, side="right"))
    key = (m.index, interval.name, int(bounds[0]), closed)
    rows = state.closed_klines(
        key, lambda: _kline_rows(state, m, interval, bounds[: closed + 1], now)
    )
    if closed < len(bounds) - 1:  # and the current, still-open candle
        rows = rows + _kline_rows(state, m, interval, bounds[closed:], now)
    return ("[" + ",".join(rows) + "]").encode()


def _kline_rows(
    state: State, m: Market, interval: intervals.Interval, bounds, now: int
) -> list[str]:
    if len(bounds) < 2:
        return []
    c = state.model.candles(m, interval, bounds, now)
    columns = (c.opens, c.open, c.high, c.low, c.close, c.volume, c.closes_ms, c.quote_volume,
               c.trades, c.taker_base, c.taker_quote)  # fmt: skip
    return [
        f'[{t},"{o:.8f}","{h:.8f}","{lo:.8f}","{cl:.8f}","{v:.8f}",{ct},"{qv:.8f}",{n},'
        f'"{tb:.8f}","{tq:.8f}","0"]'
        for t, o, h, lo, cl, v, ct, qv, n, tb, tq in zip(
            *(x.tolist() for x in columns), strict=True
        )
    ]


def depth(state: State, request: web.Request) -> dict:
    m = market(state, request.query)
    limit = min(max(_int(request.query, "limit", 100), 1), 5000)
    now = state.now_ms()
    book = quotes.book(state.model, m, now, limit)
    return {
        "lastUpdateId": now,
        "bids": [[f"{p:.8f}", f"{q:.8f}"] for p, q in book.bids],
        "asks": [[f"{p:.8f}", f"{q:.8f}"] for p, q in book.asks],
    }


MINI = (
    "symbol",
    "openPrice",
    "highPrice",
    "lowPrice",
    "lastPrice",
    "volume",
    "quoteVolume",
    "openTime",
    "closeTime",
    "firstId",
    "lastId",
    "count",
)


def compact(value: object) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


def _tickers(build: Callable, name: str, typed: bool = False) -> Handler:
    """A ticker endpoint: one object for ?symbol=, else a list (cached per second for all);
    `typed`: it takes type=FULL|MINI (the 24hr ticker)."""

    def handler(state: State, request: web.Request) -> bytes | dict | list:
        q = request.query
        kind = q.get("type", "FULL") if typed else "FULL"
        if kind not in ("FULL", "MINI"):
            raise errors.BinanceError(400, -1139, "Invalid ticker type.")
        chosen, now = selected(state, q), state.now_ms()

        def answer(markets: list[Market]) -> list[dict]:
            rows = build(state.model, markets, now)
            return [{k: r[k] for k in MINI} for r in rows] if kind == "MINI" else rows

        if chosen is None:
            return state.cached((name, kind), now, lambda: compact(answer(state.markets.markets)))
        rows = answer(chosen)
        return rows[0] if "symbol" in q else rows

    return handler


def _ticker_24h_weight(query: Mapping[str, str]) -> int:
    n = _symbol_count(query)
    return 80 if n is None or n > 100 else 40 if n > 20 else 2


def _depth_weight(query: Mapping[str, str]) -> int:
    try:
        limit = int(query.get("limit", "100"))
    except ValueError:
        return 5
    return 5 if limit <= 100 else 25 if limit <= 500 else 50 if limit <= 1000 else 250


ENDPOINTS = [
    Endpoint("/api/v3/ping", ping, lambda q: 1),
    Endpoint("/api/v3/time", server_time, lambda q: 1),
    Endpoint("/api/v3/exchangeInfo", exchange_info, lambda q: 20),
    Endpoint("/api/v3/klines", klines, lambda q: 2),
    Endpoint("/api/v3/depth", depth, _depth_weight),
    Endpoint(
        "/api/v3/ticker/24hr", _tickers(quotes.ticker_24h, "24hr", typed=True), _ticker_24h_weight
    ),
    Endpoint(
        "/api/v3/ticker/price",
        _tickers(quotes.price_tickers, "price"),
        lambda q: 2 if "symbol" in q else 4,
    ),
    Endpoint(
        "/api/v3/ticker/bookTicker",
        _tickers(quotes.book_tickers, "bookTicker"),
        lambda q: 2 if "symbol" in q else 4,
    ),
]
