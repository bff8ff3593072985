"""The market list a pool's preloader loads once: when a bot adopts it, when it keeps its own.

Real ccxt Binance classes (sync, as the preloader loads; async, as FreqTrade's bot loads),
with the hook installed on subclasses of their own so that ccxt itself stays untouched in
this process. Loading over the network is the end-to-end test's part
(tests/e2e/local/test_shared_markets.py).
"""

from __future__ import annotations

import copy
from decimal import Decimal
from types import SimpleNamespace

import ccxt
import ccxt.async_support
import pytest

from agent.shared_markets import (
    TABLES,
    SharedMarkets,
    Tables,
    choose,
    fingerprint,
    owner_of_set_markets,
)


def market(base: str, quote: str = "USDT", tick: float = 0.01) -> dict:
    """A market as ccxt's Binance parses one from exchangeInfo (the fields set_markets uses)."""
    return {
        "id": f"{base}{quote}", "symbol": f"{base}/{quote}", "base": base, "quote": quote,
        "baseId": base, "quoteId": quote, "type": "spot", "spot": True, "margin": False,
        "swap": False, "future": False, "option": False, "contract": False, "linear": None,
        "inverse": None, "active": True, "taker": 0.001, "maker": 0.001,
        "precision": {"amount": 0.001, "price": tick},
        "limits": {"amount": {"min": 0.001, "max": 1e6}, "cost": {"min": 5.0, "max": None}},
        "info": {"symbol": f"{base}{quote}", "status": "TRADING", "filters": [
            {"filterType": "PRICE_FILTER", "tickSize": str(tick)},
        ]},
    }  # fmt: skip


MARKETS = [market("BTC"), market("ETH"), market("SOL", tick=0.001)]


class Pool(SimpleNamespace):
    hook: SharedMarkets
    SyncBinance: type
    AsyncBinance: type
    SyncKraken: type


def fresh_classes() -> dict[str, type]:
    """Subclasses of ccxt's for one test: the hook wraps set_markets on them only."""
    return {
        "SyncBinance": type("SyncBinance", (ccxt.binance,), {}),
        "AsyncBinance": type("AsyncBinance", (ccxt.async_support.binance,), {}),
        "SyncKraken": type("SyncKraken", (ccxt.kraken,), {}),
    }


@pytest.fixture
def pool() -> Pool:
    """A pool's hook after its preloader recorded Binance's markets (as loaded in sync)."""
    shared = SharedMarkets()
    classes = fresh_classes()
    for cls in classes.values():
        shared.install(cls)
    shared.recording = True
    try:
        classes["SyncBinance"]().set_markets(copy.deepcopy(MARKETS))
    finally:
        shared.recording = False
    return Pool(hook=shared, **classes)


def preloaded(pool: Pool) -> Tables:
    (tables,) = set(pool.hook.shared.values())  # a first load's and a reload's fingerprint
    return tables


def test_the_decision_takes_the_pools_tables_only_for_the_same_inputs_and_exchange() -> None:
    tables = Tables("binance", {"markets": {}})
    shared = {b"d" * 32: tables}
    assert choose(shared, "binance", b"d" * 32) is tables
    assert choose(shared, "binance", b"e" * 32) is None  # another market list
    assert choose(shared, "kraken", b"d" * 32) is None  # another exchange
    assert choose(shared, "binance", None) is None  # inputs that could not be fingerprinted
    assert choose({}, "binance", b"d" * 32) is None  # nothing preloaded


def test_the_fingerprint_sees_every_value_type_and_order() -> None:
    exchange = ccxt.binance()
    same = fingerprint(exchange, copy.deepcopy(MARKETS), None)
    assert same == fingerprint(exchange, copy.deepcopy(MARKETS), None)
    changed = copy.deepcopy(MARKETS)
    changed[2]["info"]["filters"][0]["tickSize"] = "0.0001"
    retyped = copy.deepcopy(MARKETS)
    retyped[0]["limits"]["cost"]["min"] = 5  # an int where there was a float
    for other in (changed, retyped, MARKETS[::-1], MARKETS[:2]):
        assert fingerprint(exchange, other, None) != same
    assert fingerprint(exchange, copy.deepcopy(MARKETS), {"USDT": {"id": "USDT"}}) != same
    # The exchange's own defaults that set_markets merges into each market count too.
    other_fees = ccxt.binance({"fees": {"trading": {"taker": 0.002}}})
    assert fingerprint(other_fees, copy.deepcopy(MARKETS), None) != same
    # Anything but plain data (whose pickle would be its state, not what it is): keep own.
    assert fingerprint(exchange, [{"id": object()}], None) is None
    assert fingerprint(exchange, [{"id": type("S", (str,), {})("BTCUSDT")}], None) is None
    assert fingerprint(exchange, [{"precision": Decimal("0.01")}], None) is not None


def test_the_hook_sits_where_ccxt_defines_set_markets_for_sync_and_async() -> None:
    owner = owner_of_set_markets(ccxt.binance)
    assert owner is owner_of_set_markets(ccxt.async_support.binance)
    assert "set_markets" in owner.__dict__


def test_a_bot_that_fetched_the_same_list_adopts_the_preloaded_tables(pool) -> None:
    tables = preloaded(pool)
    assert tables.exchange == "binance" and set(tables.values) == set(TABLES)
    bot = pool.AsyncBinance()  # FreqTrade's bot loads markets through its async exchange
    result = bot.set_markets(copy.deepcopy(MARKETS))
    for name in TABLES:
        assert getattr(bot, name) is tables.values[name]
    assert result is bot.markets
    # ...which are exactly what it would have built itself.
    reference = ccxt.binance()  # no hook there
    reference.set_markets(copy.deepcopy(MARKETS))
    for name in TABLES:
        assert getattr(bot, name) == getattr(reference, name)
    assert bot.market("SOL/USDT")["precision"]["price"] == 0.001


def test_a_changed_list_is_kept_as_fetched_at_every_reload(pool) -> None:
    tables = preloaded(pool)
    bot = pool.AsyncBinance()
    fresh = [*copy.deepcopy(MARKETS), market("XRP")]
    fresh[0]["active"] = False
    bot.set_markets(fresh)
    assert bot.markets is not tables.values["markets"]
    assert "XRP/USDT" in bot.symbols and bot.markets["BTC/USDT"]["active"] is False
    assert "XRP/USDT" not in tables.values["symbols"]  # the pool's tables are untouched
    # ccxt merges each load's currencies into the earlier ones: after a list with XRP, the
    # pool's list builds other tables in this bot (XRP stays a currency), so it keeps its own.
    bot.set_markets(copy.deepcopy(MARKETS))
    assert bot.markets is not tables.values["markets"] and "XRP" in bot.currencies
    assert bot.markets == tables.values["markets"]


def test_a_bot_adopts_again_at_each_reload_of_the_same_list_until_it_changes(pool) -> None:
    tables = preloaded(pool)
    bot = pool.AsyncBinance()
    for _ in range(3):  # FreqTrade reloads every markets_refresh_interval
        bot.set_markets(copy.deepcopy(MARKETS))
        assert bot.markets is tables.values["markets"]
        assert bot.currencies is tables.values["currencies"]
    bot.set_markets([*copy.deepcopy(MARKETS), market("XRP")])
    assert bot.markets is not tables.values["markets"] and "XRP/USDT" in bot.markets


def test_another_exchange_with_the_same_list_builds_its_own(pool) -> None:
    tables = preloaded(pool)
    other = pool.SyncKraken()
    other.set_markets(copy.deepcopy(MARKETS))
    assert other.markets is not tables.values["markets"]


def test_without_a_preloaded_list_set_markets_is_ccxts_own() -> None:
    idle = SharedMarkets()
    cls = type("Idle", (ccxt.binance,), {})
    idle.install(cls)
    idle.install(cls)  # installing twice wraps once
    assert cls.set_markets.__wrapped__.__name__ == "set_markets"
    assert not hasattr(cls.set_markets.__wrapped__, "__wrapped__")
    exchange = cls()
    exchange.set_markets(copy.deepcopy(MARKETS))
    assert exchange.symbols == ["BTC/USDT", "ETH/USDT", "SOL/USDT"] and not idle.shared
