"""/api/v3/exchangeInfo: Binance's symbol entries with their filters, built once as bytes."""

from __future__ import annotations

import json
import math

from tests.exchange.markets import MAJORS, Market

ORDER_TYPES = [
    "LIMIT",
    "LIMIT_MAKER",
    "MARKET",
    "STOP_LOSS",
    "STOP_LOSS_LIMIT",
    "TAKE_PROFIT",
    "TAKE_PROFIT_LIMIT",
]
SELF_TRADE_MODES = ["EXPIRE_TAKER", "EXPIRE_MAKER", "EXPIRE_BOTH", "DECREMENT"]
_MAJOR_NAMES = {name for name, *_ in MAJORS}


def _f(x: float) -> str:
    return f"{x:.8f}"


def rate_limits(weight_limit: int) -> list[dict]:
    return [
        {
            "rateLimitType": "REQUEST_WEIGHT",
            "interval": "MINUTE",
            "intervalNum": 1,
            "limit": weight_limit,
        },
        {"rateLimitType": "ORDERS", "interval": "SECOND", "intervalNum": 10, "limit": 100},
        {"rateLimitType": "ORDERS", "interval": "DAY", "intervalNum": 1, "limit": 200000},
        {"rateLimitType": "RAW_REQUESTS", "interval": "MINUTE", "intervalNum": 5, "limit": 61000},
    ]


def symbol_info(m: Market) -> dict:
    """One entry of exchangeInfo's `symbols`, shaped like Binance's spot answer."""
    margin = m.base in _MAJOR_NAMES and m.quote in ("USDT", "BTC", "FDUSD")
    usd_price = m.price * m.usd_per_quote
    max_market_qty = 2_000_000 / usd_price
    max_qty = max(9000.0, 10.0 ** math.ceil(math.log10(1e7 / usd_price)))
    return {
        "symbol": m.symbol,
        "status": "TRADING",
        "baseAsset": m.base,
        "baseAssetPrecision": 8,
        "quoteAsset": m.quote,
        "quotePrecision": 8,
        "quoteAssetPrecision": 8,
        "baseCommissionPrecision": 8,
        "quoteCommissionPrecision": 8,
        "orderTypes": ORDER_TYPES,
        "icebergAllowed": True,
        "ocoAllowed": True,
        "otoAllowed": True,
        "quoteOrderQtyMarketAllowed": True,
        "allowTrailingStop": True,
        "cancelReplaceAllowed": True,
        "amendAllowed": True,
        "pegInstructionsAllowed": True,
        "isSpotTradingAllowed": True,
        "isMarginTradingAllowed": margin,
        "filters": [
            {
                "filterType": "PRICE_FILTER",
                "minPrice": _f(m.tick),
                "maxPrice": _f(m.price * 1000),
                "tickSize": _f(m.tick),
            },
            {
                "filterType": "LOT_SIZE",
                "minQty": _f(m.step),
                "maxQty": _f(max_qty),
                "stepSize": _f(m.step),
            },
            {"filterType": "ICEBERG_PARTS", "limit": 10},
            {
                "filterType": "MARKET_LOT_SIZE",
                "minQty": "0.00000000",
                "maxQty": _f(round(max_market_qty / m.step) * m.step),
                "stepSize": "0.00000000",
            },
            {
                "filterType": "TRAILING_DELTA",
                "minTrailingAboveDelta": 10,
                "maxTrailingAboveDelta": 2000,
                "minTrailingBelowDelta": 10,
                "maxTrailingBelowDelta": 2000,
            },
            {
                "filterType": "PERCENT_PRICE_BY_SIDE",
                "bidMultiplierUp": "5",
                "bidMultiplierDown": "0.2",
                "askMultiplierUp": "5",
                "askMultiplierDown": "0.2",
                "avgPriceMins": 5,
            },
            {
                "filterType": "NOTIONAL",
                "minNotional": _f(m.min_notional),
                "applyMinToMarket": True,
                "maxNotional": "9000000.00000000",
                "applyMaxToMarket": False,
                "avgPriceMins": 5,
            },
            {"filterType": "MAX_NUM_ORDERS", "maxNumOrders": 200},
            {"filterType": "MAX_NUM_ALGO_ORDERS", "maxNumAlgoOrders": 5},
        ],
        "permissions": [],
        "permissionSets": [["SPOT", "MARGIN"] if margin else ["SPOT"]],
        "defaultSelfTradePreventionMode": "EXPIRE_MAKER",
        "allowedSelfTradePreventionModes": SELF_TRADE_MODES,
    }


class ExchangeInfo:
    """The answer for all symbols, serialized once; only serverTime is spliced in per call."""

    def __init__(self, markets: list[Market], weight_limit: int) -> None:
        self.weight_limit = weight_limit
        rest = {
            "rateLimits": rate_limits(weight_limit),
            "exchangeFilters": [],
            "symbols": [symbol_info(m) for m in markets],
        }
        self._head = b'{"timezone":"UTC","serverTime":'
        self._tail = b"," + json.dumps(rest, separators=(",", ":")).encode()[1:]

    def all_bytes(self, now_ms: int) -> bytes:
        return self._head + str(now_ms).encode() + self._tail

    def some(self, markets: list[Market], now_ms: int) -> dict:
        """The answer for ?symbol= or ?symbols= (built per call: it is small)."""
        return {
            "timezone": "UTC",
            "serverTime": now_ms,
            "rateLimits": rate_limits(self.weight_limit),
            "exchangeFilters": [],
            "symbols": [symbol_info(m) for m in markets],
        }
