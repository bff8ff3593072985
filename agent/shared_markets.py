"""One market list per pool: parsed once by the preloader, adopted by every bot it forks.

A trading bot keeps its exchange's market list (ccxt's `markets`, `markets_by_id`,
`symbols`, `currencies`...; about 26 MiB for Binance's 2,000 spot markets, see
docs/benchmarks.md), and each bot of a pool builds its own identical copy. Here the
preloader loads the list once, before it forks, for the exchanges of `PRELOAD_MARKETS`; its
pages are then shared copy-on-write by every bot.

A bot still fetches its markets itself, as before, whenever FreqTrade loads or reloads
them. ccxt turns what it fetched into its tables in `set_markets`; the hook here first
fingerprints that call's inputs (the fetched list, the currencies, and the instance's own
state that `set_markets` reads), and only when the fingerprint equals one the preloader
recorded for the same exchange does the bot take the preloader's finished tables instead of
building its own: exactly what it would have built itself. Any difference (a market added,
a filter changed, other options) and the bot builds its own, as without the hook: stale
data never wins, at every reload.

This file runs in the preloader, under the bots' interpreter: the standard library only at
import; ccxt is imported when markets are loaded.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import logging
import pickle
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

# What ccxt's set_markets assigns (baseCurrencies and quoteCurrencies only when it is given
# no currencies): the tables a bot adopts.
TABLES = (
    "markets", "markets_by_id", "symbols", "ids", "currencies", "currencies_by_id", "codes",
    "baseCurrencies", "quoteCurrencies",
)  # fmt: skip
PRELOAD_TIMEOUT_MS = 5000  # the preloader's fetch; bots wait for it to listen

logger = logging.getLogger("ftpool.shared_markets")


@dataclass(frozen=True, slots=True, eq=False)  # one object per recorded load
class Tables:
    """One exchange's market tables as the preloader's set_markets left them."""

    exchange: str
    values: Mapping[str, Any]


class PlainPickler(pickle.Pickler):
    """Pickles exact dicts, lists, tuples, strings, numbers, booleans and None (which never
    reach reducer_override) and Decimals; refuses anything else, whose pickle would be its
    state rather than its identity."""

    def reducer_override(self, obj: Any) -> Any:
        if obj is Decimal or type(obj) is Decimal:  # the class: by its name
            return NotImplemented
        raise TypeError(f"not plain data: {type(obj).__name__}")


def fingerprint(exchange: Any, markets: Any, currencies: Any, prior: Any = None) -> bytes | None:
    """A digest of everything ccxt's set_markets reads: equal digests, equal tables.

    Pickled without a memo (`fast`), so the bytes depend on the values, their types and
    their order only, never on which objects happen to be shared; only plain data (dicts,
    lists, tuples, strings, numbers, booleans, None and Decimals) counts. None when the
    inputs hold anything else: then the bot keeps its own tables. `prior`: the currencies
    the exchange held before (ccxt merges new ones into them), if not its current ones.
    """
    inputs = (
        exchange.id, markets, currencies, exchange.currencies if prior is None else prior,
        exchange.precision, exchange.limits,
        exchange.fees.get("trading") if isinstance(exchange.fees, dict) else exchange.fees,
        exchange.precisionMode, getattr(exchange.number, "__name__", repr(exchange.number)),
    )  # fmt: skip
    buffer = io.BytesIO()
    pickler = PlainPickler(buffer, protocol=5)
    pickler.fast = True
    try:
        pickler.dump(inputs)
    except (pickle.PicklingError, TypeError, ValueError, RecursionError):
        return None
    return hashlib.sha256(buffer.getvalue()).digest()


def choose(shared: Mapping[bytes, Tables], exchange_id: str, digest: bytes | None) -> Tables | None:
    """The decision: the preloader's tables when they were built from the very same inputs
    for the same exchange, otherwise None (the bot builds its own)."""
    if digest is None:
        return None
    tables = shared.get(digest)
    return tables if tables is not None and tables.exchange == exchange_id else None


def owner_of_set_markets(exchange_class: type) -> type:
    """The class whose set_markets every exchange class inherits (ccxt's BaseExchange: the
    sync and the async Exchange classes both derive from it)."""
    return next(c for c in exchange_class.__mro__ if "set_markets" in c.__dict__)


class SharedMarkets:
    """The hook on ccxt's set_markets: recording in the preloader, adopting in the bots."""

    def __init__(self) -> None:
        self.shared: dict[bytes, Tables] = {}
        self.recording = False

    def install(self, base: type) -> None:
        """Wrap `base.set_markets` (see owner_of_set_markets). Exchange classes that
        override it are left alone."""
        original = base.set_markets
        if getattr(original, "__wrapped__", None) is not None:
            return
        hook = self

        def set_markets(exchange: Any, markets: Any, currencies: Any = None) -> Any:
            if not hook.recording and not hook.shared:
                return original(exchange, markets, currencies)
            digest = fingerprint(exchange, markets, currencies)
            if hook.recording:
                before = {name: getattr(exchange, name, None) for name in TABLES}
                result = original(exchange, markets, currencies)
                if digest is not None:
                    # A bot reloading the same list merges it into the currencies it
                    # adopted, which gives the same tables again: that is a match too.
                    again = fingerprint(exchange, markets, currencies, exchange.currencies)
                    hook.record(exchange, [digest, again], before)
                return result
            tables = choose(hook.shared, exchange.id, digest)
            if tables is None:
                if any(t.exchange == exchange.id for t in hook.shared.values()):
                    logger.info("%s markets differ from the pool's: building its own", exchange.id)
                return original(exchange, markets, currencies)
            for name, value in tables.values.items():
                setattr(exchange, name, value)
            logger.info("%s markets equal the pool's shared ones: using them", exchange.id)
            return exchange.markets

        set_markets.__qualname__ = original.__qualname__
        set_markets.__wrapped__ = original  # type: ignore[attr-defined]
        base.set_markets = set_markets

    def record(self, exchange: Any, digests: list[bytes | None], before: Mapping[str, Any]) -> None:
        """Keep the tables this set_markets assigned (those it left alone stay the bot's)."""
        tables = Tables(exchange.id, {
            name: getattr(exchange, name)
            for name in TABLES
            if getattr(exchange, name, None) is not before[name]
        })  # fmt: skip
        for digest in digests:
            if digest is not None:
                self.shared[digest] = tables

    def preload(self, configs: list[dict[str, Any]]) -> list[str]:
        """Load each configured exchange's markets once (one request each, as a bot's load);
        returns what it loaded, for the log. A failure skips that exchange."""
        import ccxt

        self.install(owner_of_set_markets(ccxt.Exchange))
        loaded = []
        self.recording = True
        try:
            for entry in configs:
                name = entry["exchange"]
                try:
                    count = self._load(ccxt, name, entry.get("ccxt_config") or {})
                except Exception as exc:  # a bot loads its own anyway
                    print(f"preloader: cannot load {name} markets: {exc!r}", file=sys.stderr)
                    continue
                loaded.append(f"{name} ({count} markets)")
        finally:
            self.recording = False
        return loaded

    @staticmethod
    def _load(ccxt: Any, name: str, config: dict[str, Any]) -> int:
        exchange_class = getattr(ccxt, name, None)
        if not isinstance(exchange_class, type):
            raise ValueError(f"ccxt has no exchange {name!r}")
        exchange = exchange_class({"timeout": PRELOAD_TIMEOUT_MS, **config})
        try:
            exchange.load_markets()
            return len(exchange.markets or {})
        finally:
            # No socket may stay open in a process that forks.
            session = getattr(exchange, "session", None)
            if session is not None:
                with contextlib.suppress(Exception):
                    session.close()
