"""How a bot is launched: its command, the preloader's modules, its strategies."""

from __future__ import annotations

from typing import Any

from common.settings.parsing import choice, command, setting, text

# What a bot imports, as far as one process can import it ahead: everything a
# `freqtrade webserver` or `trade` bot loads after start (measured by diffing sys.modules)
# that is left out here is a private copy in every bot. Missing modules are skipped. Some
# also get a warm-up in the preloader (`warm_up` in agent/preloader.py): the database
# models, the candle conversion, and each ccxt exchange module listed (binance's REST, async
# and websocket classes here; list `ccxt.<id>`, `ccxt.async_support.<id>` and
# `ccxt.pro.<id>` for the exchanges your bots use).
FREQTRADE_MODULES = ",".join([
    "freqtrade.main", "freqtrade.commands", "freqtrade.freqtradebot", "freqtrade.worker",
    "freqtrade.exchange", "freqtrade.exchange.check_exchange", "freqtrade.persistence",
    "freqtrade.data.converter",
    "freqtrade.rpc.api_server.webserver", "freqtrade.rpc.api_server.api_v1",
    *(f"freqtrade.rpc.api_server.{m}" for m in (
        "api_auth", "api_trading", "api_webserver", "api_ws", "api_backtest", "api_analysis",
        "api_pair_history", "api_download_data", "api_background_tasks", "web_ui",
    )),
    "pandas", "numpy", "ccxt", "sqlalchemy", "fastapi", "uvicorn", "talib", "uvloop", "jwt",
    "uvicorn.protocols.http.h11_impl", "uvicorn.protocols.websockets.websockets_sansio_impl",
    "uvicorn.lifespan.on",
    # What a trading bot imports besides: SQLite and its SQLAlchemy dialect, uvicorn's
    # protocol choice, anyio's streams, systemd's notifier, pandas' conversions to Arrow.
    "sqlite3", "sqlalchemy.dialects.sqlite", "uvicorn.protocols.http.auto",
    "uvicorn.protocols.websockets.auto", "anyio._backends._asyncio", "anyio.streams.memory",
    "anyio.streams.stapled", "anyio.streams.tls", "fastapi.telemetry._runtime", "sdnotify",
    "pyarrow.pandas_compat", "pyarrow.vendored.version",
    *(f"{package}.binance" for package in ("ccxt", "ccxt.async_support", "ccxt.pro")),
])  # fmt: skip


def bot_command() -> Any:
    return setting(
        "BOT_COMMAND", command, "freqtrade trade", "command run for each bot (+ --config)"
    )


def bot_launch() -> Any:
    return setting(
        "BOT_LAUNCH",
        choice("preload", "exec"),
        "preload",
        "pools' default: fork bots from a process with FreqTrade imported (preload), or exec",
    )


def preload_modules() -> Any:
    return setting(
        "PRELOAD_MODULES", text, FREQTRADE_MODULES, "modules the preloader imports first"
    )


def strategies_dir() -> Any:
    return setting(
        "STRATEGIES_DIR", text, "", "directory of strategy files (default: bundled samples)"
    )


def default_strategy() -> Any:
    return setting(
        "DEFAULT_STRATEGY", text, "SampleStrategy", "strategy of a bot provisioned without one"
    )
