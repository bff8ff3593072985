"""Signed (USER_DATA) endpoints: the account with its balances, and the open orders (none).

Checked like Binance: header X-MBX-APIKEY equal to the configured key (-2014 missing or
malformed, -2015 wrong), `timestamp` within `recvWindow` of the server's time (-1021), and
`signature` = hex HMAC-SHA256(secret, the query string without the signature) (-1022).
"""

from __future__ import annotations

import hashlib
import hmac
import re

from aiohttp import web

from tests.exchange import errors
from tests.exchange.errors import BinanceError
from tests.exchange.public import Endpoint, market
from tests.exchange.state import State

API_KEY_RE = re.compile(r"[A-Za-z0-9_-]{1,128}")
MAX_RECV_WINDOW = 60_000


def verify(state: State, request: web.Request) -> None:
    """Raise Binance's error when the request is not signed right."""
    key = request.headers.get("X-MBX-APIKEY")
    if not key or not API_KEY_RE.fullmatch(key):
        raise BinanceError(401, -2014, "API-key format invalid.")
    if not hmac.compare_digest(key, state.settings.api_key):
        raise BinanceError(401, -2015, "Invalid API-key, IP, or permissions for action.")
    q = request.query
    timestamp = q.get("timestamp", "")
    if not timestamp.isdigit():
        raise errors.mandatory("timestamp")
    recv_window = q.get("recvWindow", "5000")
    if not recv_window.isdigit():
        raise errors.illegal_chars("recvWindow", "^[0-9]{1,20}$")
    if int(recv_window) > MAX_RECV_WINDOW:
        raise BinanceError(400, -1131, "recvWindow must be less than 60000")
    now = state.now_ms()
    if int(timestamp) >= now + 1000 or now - int(timestamp) > int(recv_window):
        raise BinanceError(400, -1021, "Timestamp for this request is outside of the recvWindow.")
    raw = request.rel_url.raw_query_string
    parts = raw.split("&")
    signatures = [p[len("signature=") :] for p in parts if p.startswith("signature=")]
    if not signatures or not signatures[-1]:
        raise errors.mandatory("signature")
    payload = "&".join(p for p in parts if not p.startswith("signature="))
    expected = hmac.new(
        state.settings.api_secret.encode(), payload.encode(), hashlib.sha256
    ).hexdigest()
    if not hmac.compare_digest(signatures[-1].lower(), expected):
        raise BinanceError(400, -1022, "Signature for this request is not valid.")


def account(state: State, request: web.Request) -> dict:
    verify(state, request)
    omit_zero = request.query.get("omitZeroBalances", "false").lower() == "true"
    balances = [
        {"asset": asset, "free": f"{float(amount):.8f}", "locked": "0.00000000"}
        for asset, amount in state.settings.balances.items()
        if not (omit_zero and float(amount) == 0)
    ]
    return {
        "makerCommission": 10,
        "takerCommission": 10,
        "buyerCommission": 0,
        "sellerCommission": 0,
        "commissionRates": {
            "maker": "0.00100000",
            "taker": "0.00100000",
            "buyer": "0.00000000",
            "seller": "0.00000000",
        },
        "canTrade": True,
        "canWithdraw": True,
        "canDeposit": True,
        "brokered": False,
        "requireSelfTradePrevention": False,
        "preventSor": False,
        "updateTime": state.now_ms() - 3_600_000,
        "accountType": "SPOT",
        "balances": balances,
        "permissions": ["SPOT"],
        "uid": 354937868,
    }


def open_orders(state: State, request: web.Request) -> list:
    verify(state, request)
    if "symbol" in request.query:
        market(state, request.query)
    return []


ENDPOINTS = [
    Endpoint("/api/v3/account", account, lambda q: 20),
    Endpoint("/api/v3/openOrders", open_orders, lambda q: 6 if "symbol" in q else 80),
]
