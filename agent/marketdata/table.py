"""Per-exchange tables: which public endpoints may be shared, for how long, and their weights.

A table is data (`exchanges/<ccxt id>.json`), so another ccxt exchange is added with a file,
not with code. An exchange without a table is not routed through the proxy by the agent,
and passes through untouched should a request for it arrive anyway.

A table names:
- `urls`: the keys of ccxt's `urls.api` that bots reach through the proxy (its public
  market data, never the private keys), with ccxt's defaults (the upstreams of the keys
  a user did not override; the agent's interpreter has no ccxt to ask);
- `private`: query parameters and headers that make a request private (never shared);
- `budget`: the address's request-weight limit per minute, the share of it public requests
  may use, the header in which the exchange reports the weight used, its error code;
- `endpoints`: path → how its answers are kept (`live`: only coalesced; `fixed`: `ttl_ms`;
  `quote`: the configured quote lifetime; `candles`: closed candles for good, otherwise
  until the open one closes or the configured candle lifetime) and its weight.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

TABLES_DIR = Path(__file__).with_name("exchanges")
EXCHANGE_ID = re.compile(r"[a-z][a-z0-9]{0,31}")
CACHE_KINDS = ("live", "fixed", "quote", "candles")
_ENDPOINT_FIELDS = {"cache", "weight", "ttl_ms", "close_time_field", "default_limit",
                    "closed_grace_ms"}  # fmt: skip


class TableError(ValueError):
    """A table that does not follow the format; the message names the table and the field."""


@dataclass(frozen=True, slots=True)
class Weight:
    """A request's weight: fixed, by a numeric parameter's value, or by how many symbols."""

    fixed: int = 0
    by: str = ""  # "" (fixed), "limit" or "symbols"
    default: int = 0  # the parameter's value when the request has none (by limit)
    steps: tuple[tuple[int, int], ...] = ()  # (up to this value or count, weight)
    all: int = 0  # by symbols: the weight when no symbol is named

    def of(self, query: Mapping[str, str]) -> int:
        if self.by == "limit":
            try:
                value = int(query.get("limit", self.default))
            except ValueError:
                value = self.default
            return next((w for most, w in self.steps if value <= most), self.steps[-1][1])
        if self.by == "symbols":
            count = _symbol_count(query)
            if count is None:
                return self.all
            return next((w for most, w in self.steps if count <= most), self.all)
        return self.fixed


def _symbol_count(query: Mapping[str, str]) -> int | None:
    if "symbol" in query:
        return 1
    try:
        symbols = json.loads(query["symbols"])
    except (KeyError, ValueError):
        return None
    return len(symbols) if isinstance(symbols, list) else None


@dataclass(frozen=True, slots=True)
class Endpoint:
    path: str
    cache: str
    weight: Weight
    ttl_ms: int = 0  # cache "fixed"
    close_time_field: int = 6  # cache "candles": a row's close time (ms) at this index
    default_limit: int = 500  # cache "candles": rows answered when the request names none
    closed_grace_ms: int = 0  # cache "candles": a candle counts as closed this long after


@dataclass(frozen=True, slots=True)
class BudgetRule:
    weight_limit: int  # per address and minute
    public_share: float  # public requests stop at this share of the limit
    used_weight_header: str  # "" when the exchange reports none
    error_code: int  # the code of the exchange's own "too much request weight" errors


@dataclass(frozen=True, slots=True)
class ExchangeTable:
    exchange: str
    urls: Mapping[str, str]
    private_params: frozenset[str]
    private_headers: tuple[str, ...]
    budget: BudgetRule
    endpoints: tuple[Endpoint, ...]

    def endpoint(self, path: str) -> Endpoint | None:
        """The endpoint an upstream path ends with: the table's paths are relative to the
        exchange's host, an override may put a prefix before them (another proxy)."""
        return next((e for e in self.endpoints if path.endswith(e.path)), None)

    def is_private(self, params: Mapping[str, str], headers: Mapping[str, str]) -> bool:
        return any(p in params for p in self.private_params) or any(
            h in headers for h in self.private_headers
        )


def _field(raw: Mapping[str, Any], name: str, kind: type, where: str) -> Any:
    value = raw.get(name)
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
        raise TableError(f"{where}: {name!r} must be {kind.__name__}")
    return value


def _steps(raw: object, where: str) -> tuple[tuple[int, int], ...]:
    if not isinstance(raw, list) or not raw:
        raise TableError(f"{where}: steps must be a non-empty list of [up to, weight]")
    steps = []
    for step in raw:
        if (not isinstance(step, list) or len(step) != 2
                or not all(type(n) is int and n >= 0 for n in step)):  # fmt: skip
            raise TableError(f"{where}: each step is [up to, weight], non-negative integers")
        steps.append((step[0], step[1]))
    if [s[0] for s in steps] != sorted(s[0] for s in steps):
        raise TableError(f"{where}: steps must rise")
    return tuple(steps)


def _weight(raw: object, where: str) -> Weight:
    if type(raw) is int and raw >= 0:
        return Weight(fixed=raw)
    if not isinstance(raw, dict) or raw.get("by") not in ("limit", "symbols"):
        raise TableError(f"{where}: weight is an integer or {{'by': 'limit' | 'symbols', ...}}")
    if raw["by"] == "limit":
        return Weight(by="limit", default=_field(raw, "default", int, where),
                      steps=_steps(raw.get("steps"), where))  # fmt: skip
    return Weight(by="symbols", steps=_steps(raw.get("steps"), where),
                  all=_field(raw, "all", int, where))  # fmt: skip


def _endpoint(path: str, raw: object, where: str) -> Endpoint:
    where = f"{where} endpoint {path}"
    if not isinstance(raw, dict) or not re.fullmatch(r"(/[A-Za-z0-9_-][A-Za-z0-9_.-]*)+", path):
        raise TableError(f"{where}: an endpoint is a path and a map")
    if unknown := set(raw) - _ENDPOINT_FIELDS:
        raise TableError(f"{where}: unknown fields {sorted(unknown)}")
    cache = raw.get("cache")
    if cache not in CACHE_KINDS:
        raise TableError(f"{where}: cache must be one of {', '.join(CACHE_KINDS)}")
    numbers = {k: raw[k] for k in _ENDPOINT_FIELDS - {"cache", "weight"} if k in raw}
    if not all(type(v) is int and v >= 0 for v in numbers.values()):
        raise TableError(f"{where}: {sorted(numbers)} must be non-negative integers")
    if cache == "fixed" and not numbers.get("ttl_ms"):
        raise TableError(f"{where}: a fixed lifetime needs ttl_ms")
    return Endpoint(path=path, cache=cache, weight=_weight(raw.get("weight"), where), **numbers)


def parse_table(raw: object, where: str = "table") -> ExchangeTable:
    if not isinstance(raw, dict):
        raise TableError(f"{where}: a table is a JSON object")
    exchange = _field(raw, "exchange", str, where)
    if not EXCHANGE_ID.fullmatch(exchange):
        raise TableError(f"{where}: exchange must be a ccxt id ({EXCHANGE_ID.pattern})")
    urls = _field(raw, "urls", dict, where)
    if not all(isinstance(k, str) and isinstance(v, str) and v.startswith(("http://", "https://"))
               for k, v in urls.items()):  # fmt: skip
        raise TableError(f"{where}: urls maps ccxt's urls.api keys to http(s) URLs")
    private = _field(raw, "private", dict, where)
    params, headers = private.get("params", []), private.get("headers", [])
    if not all(isinstance(p, str) for p in [*params, *headers]):
        raise TableError(f"{where}: private params and headers are lists of names")
    budget = _field(raw, "budget", dict, where)
    share = budget.get("public_share")
    if not isinstance(share, int | float) or not 0 < share <= 1:
        raise TableError(f"{where}: budget.public_share must be within (0, 1]")
    rule = BudgetRule(
        weight_limit=_field(budget, "weight_limit", int, where), public_share=float(share),
        used_weight_header=budget.get("used_weight_header") or "",
        error_code=_field(budget, "error_code", int, where),
    )  # fmt: skip
    endpoints = _field(raw, "endpoints", dict, where)
    return ExchangeTable(
        exchange=exchange, urls=dict(urls), private_params=frozenset(params),
        private_headers=tuple(headers), budget=rule,
        endpoints=tuple(_endpoint(p, e, where) for p, e in endpoints.items()),
    )  # fmt: skip


def load_tables(directory: Path = TABLES_DIR) -> dict[str, ExchangeTable]:
    """Every table in `directory`, by exchange id; a broken table is an error, not skipped."""
    tables = {}
    for path in sorted(directory.glob("*.json")):
        try:
            raw = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise TableError(f"{path.name}: cannot be read: {exc}") from None
        table = parse_table(raw, path.name)
        if table.exchange != path.stem:
            raise TableError(f"{path.name}: names exchange {table.exchange!r}")
        tables[table.exchange] = table
    return tables
