"""The pools' market-data proxies: bots share their exchange's public market data."""

from __future__ import annotations

from typing import Any

from common.settings.parsing import boolean, integer, setting


def market_data_proxy() -> Any:
    return setting(
        "MARKET_DATA_PROXY", boolean, "true",
        "bots reach their exchange's public market data through their pool's shared cache",
    )  # fmt: skip


def market_data_base_port() -> Any:
    return setting(
        "MARKET_DATA_BASE_PORT", integer(1024, 65535), "8000",
        "pool N's market-data proxy listens on 127.0.0.1:<this + N - 1>, below POOL_BASE_PORT",
    )  # fmt: skip


def market_data_quote_ttl_ms() -> Any:
    return setting(
        "MARKET_DATA_QUOTE_TTL", integer(0, 3_600_000), "2000",
        "how long the market-data proxy shares tickers and order books (0: in flight only)",
    )  # fmt: skip


def market_data_candle_ttl_ms() -> Any:
    return setting(
        "MARKET_DATA_CANDLE_TTL", integer(0, 3_600_000), "5000",
        "how long it shares candles while the newest is open (closed ones: for good)",
    )  # fmt: skip


def market_data_cache_bytes() -> Any:
    return setting(
        "MARKET_DATA_CACHE_BYTES", integer(1 << 20, 1 << 34), str(64 << 20),
        "memory the market-data proxy of each pool may keep answers in",
    )  # fmt: skip
