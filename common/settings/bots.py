"""How a bot is launched: its command, the preloader's modules, its strategies."""

from __future__ import annotations

import base64
import binascii
import json
import re
from typing import Any

from common.settings.parsing import choice, command, setting, text

MAX_PRELOAD_MARKETS = 8  # exchange entries
MAX_PRELOAD_MARKETS_TEXT = 64 * 1024
CCXT_ID = re.compile(r"[a-z][a-z0-9]{1,31}")
BASE64 = "base64:"  # how the controller hands PRELOAD_MARKETS to agents (INI-safe)

# What a bot imports, as far as one process can import it ahead: everything a
# `freqtrade webserver` or `trade` bot loads after start (measured by diffing sys.modules)
# that is left out here is a private copy in every bot. Missing modules are skipped. Some
# also get a warm-up in the preloader (`warm_up` in agent/warm_ups.py): the database
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


# ccxt's credential fields (and headers, which can carry them), lower-cased.
CREDENTIALS = frozenset((
    "apikey", "secret", "password", "uid", "login", "privatekey", "walletaddress", "token",
    "twofa", "headers", "accesstoken",
))  # fmt: skip


def market_exchanges(raw: str) -> str:
    """A JSON list of `{"exchange": <ccxt id>, "ccxt_config": {...}}`, returned compact
    ("" for none): the exchanges whose market list each pool's preloader loads once."""
    if not raw.strip():
        return ""
    if raw.startswith(BASE64):
        try:
            raw = base64.urlsafe_b64decode(raw[len(BASE64) :].encode()).decode()
        except (binascii.Error, UnicodeDecodeError):
            raise ValueError("must be JSON or base64: and base64url-encoded JSON") from None
    if len(raw) > MAX_PRELOAD_MARKETS_TEXT:
        raise ValueError(f"must be at most {MAX_PRELOAD_MARKETS_TEXT} characters")
    try:
        value = json.loads(raw)
    except ValueError:
        raise ValueError("must be a JSON list") from None
    if not isinstance(value, list) or not 0 < len(value) <= MAX_PRELOAD_MARKETS:
        raise ValueError(f"must be a JSON list of 1 to {MAX_PRELOAD_MARKETS} exchanges")
    for entry in value:
        if not isinstance(entry, dict) or set(entry) - {"exchange", "ccxt_config"}:
            raise ValueError('each entry must be {"exchange": ..., "ccxt_config": {...}}')
        if not isinstance(entry.get("exchange"), str) or not CCXT_ID.fullmatch(entry["exchange"]):
            raise ValueError("each entry's exchange must be a ccxt id such as binance")
        if not isinstance(entry.get("ccxt_config", {}), dict):
            raise ValueError("each entry's ccxt_config must be a JSON object")
        secret = sorted(k for k in entry.get("ccxt_config", {}) if k.lower() in CREDENTIALS)
        if secret:
            # The list is public data, and this setting reaches the preloader's command
            # line, which every bot user of the pool can read.
            raise ValueError(f"a market list is public: no credentials in ccxt_config "
                             f"({', '.join(secret)})")  # fmt: skip
    return json.dumps(value, separators=(",", ":"))


def encode_markets(value: str) -> str:
    """PRELOAD_MARKETS as one token of letters, digits, - and _ (for an agent's environment
    and the preloader's command line, which INI files carry), or "" for none."""
    return base64.urlsafe_b64encode(value.encode()).decode() if value else ""


def preload_markets() -> Any:
    return setting(
        "PRELOAD_MARKETS", market_exchanges, "",
        "JSON list of exchanges whose market list each pool's preloader loads once for its bots",
    )  # fmt: skip


def preload_immortal() -> Any:
    return setting(
        "PRELOAD_IMMORTAL", choice("auto", "on", "off"), "auto",
        "make the preloader's objects immortal before it forks (auto, on: where the bots' "
        "Python supports it)",
    )  # fmt: skip


def strategies_dir() -> Any:
    return setting(
        "STRATEGIES_DIR", text, "", "directory of strategy files (default: bundled samples)"
    )


def default_strategy() -> Any:
    return setting(
        "DEFAULT_STRATEGY", text, "SampleStrategy", "strategy of a bot provisioned without one"
    )
