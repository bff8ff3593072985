"""Pointing a bot's ccxt at its pool's market-data proxy, as the agent writes its config.

For an exchange with a table, the `urls.api` keys the table names (its public market data)
in `exchange.ccxt_config` are replaced by the proxy's address for their upstream: ccxt's
default from the table, or the user's own override. So are those keys where a user set
them in `ccxt_sync_config` or `ccxt_async_config` (they win over ccxt_config in FreqTrade).

Private keys (orders, balances, the wallet) are left alone: they go to the exchange
directly, encrypted end to end. The proxy listens on a loopback port that any user of the
host could take while it restarts; what reaches it must hold no secret. Orders then never
wait for a restarting proxy, and the budget still sees their weight: the exchange's
used-weight header on every public answer counts the whole address.
Entries that cannot be routed (credentials in the URL, not http) stay as they are.

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
    for urls in [base, *(_urls(ex, section, create=False) for section in _SECTIONS)]:
        for key in table.urls.keys() & (urls or {}).keys():
            urls[key] = _routed(urls[key], port, table.exchange)
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


def proxy_url(port: int) -> str:
    """How every URL through the pool's proxy on `port` begins."""
    return f"http://127.0.0.1:{port}{PREFIX}"


def _routed(value: object, port: int, exchange: str) -> object:
    if not isinstance(value, str) or not value.startswith(("http://", "https://")):
        return value  # not an http(s) URL
    if value.startswith(proxy_url(port)):
        return value
    try:
        return proxy_base(port, exchange, value)
    except BadUpstream:
        return value
