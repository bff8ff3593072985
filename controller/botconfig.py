"""A bot's FreqTrade config and files, built from its record.

The user's overrides are merged over safe defaults, but never over the keys the
controller owns: the REST API block (port, loopback, credentials) and the paths
that keep each bot inside its own directory.
"""

from __future__ import annotations

import json
import secrets
from pathlib import Path
from typing import Any

from common.ids import check_strategy_name
from controller.errors import BadRequest
from controller.records import BotRecord, BotSecrets

# Keys a user may not set: they would move the API, the data or the code elsewhere.
PROTECTED_KEYS = frozenset({
    "api_server", "db_url", "user_data_dir", "datadir", "strategy_path", "strategy",
    "recursive_strategy_search", "add_config_files", "logfile", "freqaimodel_path",
})  # fmt: skip
MAX_CONFIG_BYTES = 64 * 1024
MAX_DEPTH = 8

DEFAULT_CONFIG: dict[str, Any] = {
    "max_open_trades": 3,
    "stake_currency": "USDT",
    "stake_amount": "unlimited",
    "tradable_balance_ratio": 0.99,
    "dry_run": True,
    "dry_run_wallet": 1000,
    "trading_mode": "spot",
    "timeframe": "5m",
    "exchange": {"name": "binance", "pair_whitelist": ["BTC/USDT", "ETH/USDT"]},
    "pairlists": [{"method": "StaticPairList"}],
    "entry_pricing": {"price_side": "same", "use_order_book": True, "order_book_top": 1},
    "exit_pricing": {"price_side": "same", "use_order_book": True, "order_book_top": 1},
    "initial_state": "running",
    "internals": {"process_throttle_secs": 5},
}


def new_secrets() -> BotSecrets:
    return BotSecrets(
        username="ftpool",
        password=secrets.token_urlsafe(24),
        jwt_secret=secrets.token_urlsafe(48),
        ws_token=secrets.token_urlsafe(24),
    )


def _depth(value: Any, level: int = 0) -> int:
    if level > MAX_DEPTH:
        return level  # deep enough to refuse; don't recurse into hostile nesting
    if isinstance(value, dict):
        return max((_depth(v, level + 1) for v in value.values()), default=level + 1)
    if isinstance(value, list):
        return max((_depth(v, level + 1) for v in value), default=level + 1)
    return level


def validate_overrides(config: object) -> dict[str, Any]:
    if config is None:
        return {}
    if not isinstance(config, dict):
        raise BadRequest("config must be a JSON object of FreqTrade settings")
    if len(json.dumps(config)) > MAX_CONFIG_BYTES:
        raise BadRequest(f"config must be at most {MAX_CONFIG_BYTES} bytes")
    if _depth(config) > MAX_DEPTH:
        raise BadRequest(f"config nests deeper than {MAX_DEPTH} levels")
    protected = sorted(PROTECTED_KEYS & config.keys())
    if protected:
        raise BadRequest(f"config may not set {', '.join(protected)}; ftpool manages them")
    return config


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def freqtrade_config(bot: BotRecord, listen_ip: str) -> dict[str, Any]:
    config = _merge(DEFAULT_CONFIG, bot.config)
    config.setdefault("bot_name", bot.id)
    config.update(
        strategy=bot.strategy,
        # Relative paths: the bot's program runs in its own directory.
        user_data_dir="user_data",
        api_server={
            "enabled": True,
            "listen_ip_address": listen_ip,
            "listen_port": bot.port,
            "verbosity": "error",
            "enable_openapi": False,
            "jwt_secret_key": bot.secrets.jwt_secret,
            "ws_token": bot.secrets.ws_token,
            "CORS_origins": [],
            "username": bot.secrets.username,
            "password": bot.secrets.password,
        },
    )
    return config


def bot_files(bot: BotRecord, listen_ip: str) -> dict[str, bytes]:
    config = json.dumps(freqtrade_config(bot, listen_ip), indent=2, sort_keys=True)
    return {
        "config.json": config.encode(),
        f"user_data/strategies/{bot.strategy}.py": bot.strategy_source,
    }


def load_strategy(strategies_dir: Path, name: str) -> bytes:
    """The source of strategy `name` (file <name>.py); unknown names are a 400, not a fallback."""
    check_strategy_name(name)
    path = strategies_dir / f"{name}.py"
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise BadRequest(f"unknown strategy {name!r}") from None
    except OSError as exc:
        raise BadRequest(f"strategy {name!r} cannot be read: {exc.strerror}") from None
