"""Binance's error answers: an HTTP status and a JSON body `{"code": -1121, "msg": "..."}`."""

from __future__ import annotations

import json

from aiohttp import web


class BinanceError(Exception):
    """Raised by a handler; answered as Binance would (status, code, msg, extra headers)."""

    def __init__(
        self, status: int, code: int, msg: str, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(f"{status} {code} {msg}")
        self.status, self.code, self.msg = status, code, msg
        self.headers = headers or {}

    def response(self) -> web.Response:
        body = json.dumps({"code": self.code, "msg": self.msg}, separators=(",", ":"))
        return web.Response(
            status=self.status,
            body=body.encode(),
            content_type="application/json",
            charset="UTF-8",
            headers=self.headers,
        )


def invalid_symbol() -> BinanceError:
    return BinanceError(400, -1121, "Invalid symbol.")


def invalid_interval() -> BinanceError:
    return BinanceError(400, -1120, "Invalid interval.")


def mandatory(name: str) -> BinanceError:
    return BinanceError(
        400, -1102, f"Mandatory parameter '{name}' was not sent, was empty/null, or malformed."
    )


def illegal_chars(name: str, legal: str) -> BinanceError:
    return BinanceError(
        400, -1100, f"Illegal characters found in parameter '{name}'; legal range is '{legal}'."
    )


def bad_combination() -> BinanceError:
    return BinanceError(400, -1101, "Combination of optional parameters invalid.")


def too_much_weight(limit: int, retry_after: int) -> BinanceError:
    return BinanceError(
        429,
        -1003,
        f"Too much request weight used; current limit is {limit} request weight per 1 MINUTE. "
        "Please use WebSocket Streams for live updates to avoid polling the API.",
        {"Retry-After": str(retry_after)},
    )


def banned(until_ms: int, retry_after: int) -> BinanceError:
    return BinanceError(
        418,
        -1003,
        f"Way too much request weight used; IP banned until {until_ms}. "
        "Please use WebSocket Streams for live updates to avoid bans.",
        {"Retry-After": str(retry_after)},
    )


def injected(status: int) -> BinanceError:
    """The answer of a fault with a status: Binance's own body for that kind of status."""
    if status in (418, 429):
        return BinanceError(
            status, -1003, "Too many requests (injected fault).", {"Retry-After": "1"}
        )
    if status >= 500:
        return BinanceError(
            status, -1001, "Internal error; unable to process your request. Please try again."
        )
    return BinanceError(status, -1000, "An unknown error occurred while processing the request.")
