"""Pointing a bot's ccxt at its pool's market-data proxy, as the agent writes its config.

For an exchange with a table, every http(s) entry of `exchange.ccxt_config.urls.api` (ccxt's
defaults from the table, or the user's own override, which becomes the upstream) is
replaced by the proxy's address for that upstream, and so are the entries a user set in
`ccxt_sync_config` or `ccxt_async_config` (they win over ccxt_config in FreqTrade). Private
keys are routed too: the proxy passes them through unchanged, and so the address's budget
and back-offs cover every request (an exchange bans the address, not the key).
Websocket URLs and entries that cannot be routed (credentials in the URL, not http) stay.

The controller stores and returns the user's config; only the file in the pool differs.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping, Sequence
from typing import Any

from agent.marketdata.address import PREFIX, BadUpstream, proxy_base
from agent.marketdata.table import ExchangeTable

CONFIG_FLAGS = ("--config", "-c")
_SECTIONS = ("ccxt_sync_config", "ccxt_async_config")


def config_files(argv: Sequence[str]) -> list[str]:
    """The config files a freqtrade command line names (`--config X`, `-c X`, `--config=X`)."""
    found = []
    for i, arg in enumerate(argv):
        if arg in CONFIG_FLAGS and i + 1 < len(argv):
            found.append(argv[i + 1])
        elif arg.startswith("--config="):
            found.append(arg.split("=", 1)[1])
    return found


def route_file(content: bytes, port: int, tables: Mapping[str, ExchangeTable]) -> bytes:
    """A config file's content routed through the proxy; unchanged when there is nothing
    to route (no table for its exchange, or not a JSON object)."""
    try:
        config = json.loads(content)
    except ValueError:
        return content  # FreqTrade will say what is wrong with it
    routed = route_config(config, port, tables) if isinstance(config, dict) else None
    if routed is None:
        return content
    return json.dumps(routed, indent=2, sort_keys=True).encode()


def route_config(
    config: dict[str, Any], port: int, tables: Mapping[str, ExchangeTable]
) -> dict[str, Any] | None:
    """A copy of `config` with ccxt's URLs through the proxy; None when nothing is routed."""
    exchange = config.get("exchange")
    name = exchange.get("name") if isinstance(exchange, dict) else None
    table = tables.get(name.lower()) if isinstance(name, str) else None
    if table is None:
        return None
    routed = copy.deepcopy(config)
    ex = routed["exchange"]
    base = _urls(ex, "ccxt_config", create=True)
    if base is None:
        return None  # an urls.api that is not a map: left to the user and ccxt
    for key, default in table.urls.items():
        base.setdefault(key, default)
    _route_all(base, port, table.exchange)
    for section in _SECTIONS:
        urls = _urls(ex, section, create=False)
        if urls is not None:
            _route_all(urls, port, table.exchange)
    return routed


def _urls(exchange: dict[str, Any], section: str, create: bool) -> dict[str, Any] | None:
    """exchange[section].urls.api, made when `create`; None when absent or not maps."""
    node: Any = exchange
    for name in (section, "urls", "api"):
        if name not in node and create:
            node[name] = {}
        node = node.get(name)
        if not isinstance(node, dict):
            return None
    return node


def _route_all(urls: dict[str, Any], port: int, exchange: str) -> None:
    for key, value in urls.items():
        urls[key] = _routed(value, port, exchange)


def _routed(value: object, port: int, exchange: str) -> object:
    if not isinstance(value, str) or not value.startswith(("http://", "https://")):
        return value  # a websocket URL, a nested map (ccxt.pro's), or not a URL
    if value.startswith(f"http://127.0.0.1:{port}{PREFIX}"):
        return value
    try:
        return proxy_base(port, exchange, value)
    except BadUpstream:
        return value
