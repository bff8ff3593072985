"""An offline Binance spot exchange emulator for tests, benchmarks and the demo.

Real `freqtrade trade --dry-run` bots (through ccxt) trade against it with no internet:
deterministic synthetic prices aligned to wall-clock time, ~2,000 markets, request and weight
accounting per bot, faults on demand, Binance's weight budget with 429 and 418, and a couple
of signed endpoints.

    python -m tests.exchange --port 0       # prints: exchange emulator listening on http://...

    async with ExchangeEmulator(Settings()) as emu:
        overrides = exchange_config(emu.url, pairs(20), client="bot-1")
"""

from tests.exchange.botconfig import DEMO_STRATEGY, exchange_config, trading_bot
from tests.exchange.markets import build_markets, pairs
from tests.exchange.process import EmulatorProcess
from tests.exchange.server import ExchangeEmulator, build_app
from tests.exchange.state import Settings, State

__all__ = [
    "DEMO_STRATEGY",
    "EmulatorProcess",
    "ExchangeEmulator",
    "Settings",
    "State",
    "build_app",
    "build_markets",
    "exchange_config",
    "pairs",
    "trading_bot",
]
