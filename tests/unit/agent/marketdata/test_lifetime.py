"""How long answers are kept: pure decisions on an answer and a time."""

from __future__ import annotations

import json

from agent.marketdata.lifetime import FOREVER, Lifetimes, expires_at, last_close_ms
from agent.marketdata.table import load_tables

BINANCE = load_tables()["binance"]
KLINES = BINANCE.endpoint("/api/v3/klines")
MINUTE_MS = 60_000
T0 = 1_795_000_040  # 20 s into a minute (seconds)
LIFETIMES = Lifetimes(quote_ms=1500, candle_ms=2000)


def candles(first_open_ms: int, n: int) -> bytes:
    rows = [
        [t, "1.0", "1.1", "0.9", "1.0", "5.0", t + MINUTE_MS - 1, "5.0", 3, "1.0", "1.0", "0"]
        for t in range(first_open_ms, first_open_ms + n * MINUTE_MS, MINUTE_MS)
    ]
    return json.dumps(rows, separators=(",", ":")).encode()


def open_minute_ms(now_s: float) -> int:
    return int(now_s * 1000) // MINUTE_MS * MINUTE_MS


def test_fixed_quote_and_live():
    info = BINANCE.endpoint("/api/v3/exchangeInfo")
    assert expires_at(info, {}, b"{}", T0, LIFETIMES) == T0 + 300
    assert expires_at(BINANCE.endpoint("/api/v3/depth"), {}, b"{}", T0, LIFETIMES) == T0 + 1.5
    assert expires_at(BINANCE.endpoint("/api/v3/time"), {}, b"{}", T0, LIFETIMES) == T0


def test_an_open_candle_keeps_the_answer_for_the_candle_lifetime():
    body = candles(open_minute_ms(T0) - 4 * MINUTE_MS, 5)  # the last one is open
    assert expires_at(KLINES, {"limit": "5"}, body, T0, LIFETIMES) == T0 + 2


def test_an_open_candle_closing_sooner_ends_it_at_the_close():
    now = T0 + 39.5  # half a second before the open candle closes
    body = candles(open_minute_ms(now) - 4 * MINUTE_MS, 5)
    closes = (open_minute_ms(now) + MINUTE_MS) / 1000
    assert expires_at(KLINES, {"limit": "5"}, body, now, LIFETIMES) == closes


def test_closed_candles_of_a_fixed_range_are_kept_for_good():
    body = candles(open_minute_ms(T0) - 10 * MINUTE_MS, 5)
    end = {"endTime": str(open_minute_ms(T0) - 5 * MINUTE_MS)}
    assert expires_at(KLINES, end, body, T0, LIFETIMES) == FOREVER
    full_page = {"startTime": str(open_minute_ms(T0) - 10 * MINUTE_MS), "limit": "5"}
    assert expires_at(KLINES, full_page, body, T0, LIFETIMES) == FOREVER


def test_closed_candles_of_an_open_range_are_not():
    body = candles(open_minute_ms(T0) - 10 * MINUTE_MS, 5)
    # A halted market's newest candles: more may come, the answer would then lack them.
    assert expires_at(KLINES, {"limit": "5"}, body, T0, LIFETIMES) == T0 + 2
    short_page = {"startTime": "1", "limit": "10"}
    assert expires_at(KLINES, short_page, body, T0, LIFETIMES) == T0 + 2


def test_a_candle_just_closed_is_not_trusted_yet():
    now = T0 - 19  # one second after the minute turned: within the grace of 3 s
    body = candles(open_minute_ms(now) - 5 * MINUTE_MS, 5)  # all closed, the last one just now
    assert expires_at(KLINES, {"endTime": "9"}, body, now, LIFETIMES) <= now


def test_answers_that_are_not_candle_rows():
    assert expires_at(KLINES, {}, b"[]", T0, LIFETIMES) == T0 + 2
    assert last_close_ms(b"[]", 6) is None
    assert last_close_ms(b'{"code":-1121}', 6) is None
    assert last_close_ms(b'[[1,2,"x"]]', 6) is None
    assert last_close_ms(b'[[1,2,3,4,5,6,"7"]]', 6) is None
    assert last_close_ms(candles(0, 3), 6) == (3, 3 * MINUTE_MS - 1)
