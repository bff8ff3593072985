"""The preloader's warm-ups (agent/preloader.py).

Importing is not all that every bot would otherwise do on its own. What a bot's
first steps fill in on shared objects (ccxt's set-up of an exchange class, SQLAlchemy's
mapper configuration, pandas' lazily built internals) lands in pages that every bot then
copies. So for a preloaded module that has a warm-up (`warm_up`), the preloader takes those
steps once, before it forks, on throwaway objects. A warm-up stays offline and leaves no
thread, event loop, socket or open file behind; one that fails is logged and skipped.

This file runs under the bots' Python interpreter (FreqTrade's, not the agent's), loaded by
path beside the preloader: it uses the standard library only, and imports what it warms up
only when it is asked to.
"""

from __future__ import annotations

import sys


def warm_up(name: str) -> None:
    """Do once, before forking, what every bot using module `name` does first (see above)."""
    package, _, exchange = name.rpartition(".")
    if package in ("ccxt", "ccxt.async_support", "ccxt.pro"):
        # The first instance of a ccxt exchange class aliases each of the class's methods in
        # camelCase, on the class, and hashes the strings of the exchange's description. An
        # instance makes no request until it is used.
        exchange_class = getattr(sys.modules[name], exchange, None)
        if isinstance(exchange_class, type):
            exchange_class()
    elif name == "freqtrade.persistence":
        warm_up_database()
    elif name == "freqtrade.data.converter":
        # A bot's first candles become a DataFrame through this very function.
        from freqtrade.data.converter import ohlcv_to_dataframe

        start = 1_700_000_040_000  # ms, on a minute
        candles = [[start + i * 60_000, 1.0, 2.0, 0.5, 1.5, 10.0] for i in range(100)]
        ohlcv_to_dataframe(candles, "1m", "BTC/USDT", fill_missing=True, drop_incomplete=True)


def warm_up_database() -> None:
    """Create FreqTrade's tables in a throwaway in-memory SQLite database and query each, as
    a bot's `init_db` and first queries do: SQLAlchemy configures the mappers and memoizes
    the tables' SQL once, here."""
    from freqtrade.persistence.base import ModelBase
    from sqlalchemy import create_engine, select
    from sqlalchemy.orm import Session, configure_mappers

    configure_mappers()
    engine = create_engine("sqlite://")
    try:
        ModelBase.metadata.create_all(engine)
        with Session(engine) as session:
            for mapper in ModelBase.registry.mappers:
                session.scalars(select(mapper.class_).limit(1)).all()
    finally:
        engine.dispose()
