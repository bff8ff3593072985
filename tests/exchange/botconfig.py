"""FreqTrade config overrides for a bot that trades against the emulator, offline.

Every URL ccxt's binance knows (urls.api: spot, margin, futures, options, portfolio margin;
and ccxt.pro's websocket URLs) is pointed at the emulator, so even a call the emulator does
not serve fails on loopback instead of reaching Binance. Websockets are off, the pairs are a
StaticPairList, markets are fetched for spot only, without the margin and currency calls that
need keys, and there is no fiat display currency (that would call CoinGecko) and no Telegram.
"""

from __future__ import annotations

import re
from functools import lru_cache
from urllib.parse import urlsplit

from tests.exchange.faults import CLIENT_RE
from tests.exchange.markets import pairs

__all__ = ["api_urls", "exchange_config", "pairs", "trading_bot"]

DEMO_STRATEGY = "DemoStrategy"  # bundled in controller/strategies

CCXT_OPTIONS = {
    "fetchMarkets": {"types": ["spot"]},
    "fetchMargins": False,
    "fetchCurrencies": False,
}


@lru_cache(maxsize=1)
def _ccxt_urls() -> tuple[dict, dict]:
    import ccxt
    import ccxt.pro

    return ccxt.binance().urls["api"], ccxt.pro.binance().urls["api"]


def _rewrite(value: object, base: str) -> object:
    """value (a URL, or a dict of them, nested) with scheme and host replaced by base."""
    if isinstance(value, dict):
        return {k: _rewrite(v, base) for k, v in value.items()}
    if not isinstance(value, str):
        return value
    parts = urlsplit(value)
    if parts.scheme in ("ws", "wss"):
        base = re.sub(r"^http", "ws", base)
    return base + parts.path + (f"?{parts.query}" if parts.query else "")


def api_urls(url: str, client: str | None = None, *, websockets: bool = False) -> dict:
    """ccxt binance's urls['api'], every entry rewritten to the emulator at `url` (plus
    /c/<client>); with websockets, ccxt.pro's ws entries too (the emulator serves none)."""
    if client is not None and not CLIENT_RE.fullmatch(client):
        raise ValueError(f"client must match {CLIENT_RE.pattern}")
    base = url.rstrip("/") + (f"/c/{client}" if client else "")
    rest, pro = _ccxt_urls()
    urls = _rewrite(rest, base)
    if websockets:
        urls.update(_rewrite({k: v for k, v in pro.items() if k not in rest}, base))
    return urls


def exchange_config(url: str, pairs: list[str], client: str | None = None) -> dict:
    """The overrides to merge into a bot's config.json (deeply: `exchange` is partial)."""
    return {
        "exchange": {
            "name": "binance",
            "key": "",
            "secret": "",
            "pair_whitelist": list(pairs),
            "pair_blacklist": [],
            "enable_ws": False,
            "ccxt_config": {"urls": {"api": api_urls(url, client)}, "options": CCXT_OPTIONS},
            "ccxt_async_config": {
                "urls": {"api": api_urls(url, client, websockets=True)},
                "options": CCXT_OPTIONS,
            },
        },
        "pairlists": [{"method": "StaticPairList"}],
        "timeframe": "1m",
        "telegram": {"enabled": False, "token": "", "chat_id": ""},
    }


def trading_bot(url: str, bot: str, n_pairs: int = 3) -> dict:
    """ftpool's provisioning body (`POST /api/bots`) of a dry-run bot that trades the
    DemoStrategy on n_pairs of the emulator at `url`, told apart there as client `bot`."""
    config = exchange_config(url, pairs(n_pairs), client=bot)
    config.update(max_open_trades=n_pairs, stake_amount=50, dry_run_wallet=1000)
    return {"instanceId": bot, "strategy": DEMO_STRATEGY, "config": config}
