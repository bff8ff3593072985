"""python -m tests.exchange --port P [--host H] [--markets N] [--seed S] [--api-key K
--api-secret S] [--weight-limit W] [--ban-seconds B]: serve until SIGINT or SIGTERM.

Prints `exchange emulator listening on http://HOST:PORT` (the real port when --port 0) once
it serves.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys

from tests.exchange.server import ExchangeEmulator
from tests.exchange.state import Settings


def parse_args(argv: list[str] | None = None) -> Settings:
    defaults = Settings()
    p = argparse.ArgumentParser(
        prog="python -m tests.exchange",
        description="An offline Binance spot exchange emulator; serves until SIGINT or SIGTERM.",
    )
    p.add_argument("--port", type=int, required=True, help="TCP port, 0 = any free one")
    p.add_argument("--host", default=defaults.host)
    p.add_argument("--markets", type=int, default=defaults.markets, help="how many symbols")
    p.add_argument("--seed", type=int, default=defaults.seed, help="the price paths' seed")
    p.add_argument("--api-key", default=defaults.api_key)
    p.add_argument("--api-secret", default=defaults.api_secret)
    p.add_argument(
        "--weight-limit",
        type=int,
        default=defaults.weight_limit,
        help="request weight per address and minute, 0 = unlimited",
    )
    p.add_argument(
        "--ban-seconds",
        type=float,
        default=defaults.ban_seconds,
        help="how long an address that keeps calling after 429s gets 418",
    )
    p.add_argument(
        "--ban-after",
        type=int,
        default=defaults.ban_after,
        help="429s in a minute before the next request over the limit is banned",
    )
    a = p.parse_args(argv)
    if not 0 <= a.port <= 65535 or a.markets < 1 or a.seed < 0 or a.weight_limit < 0:
        p.error("--port 0..65535, --markets >= 1, --seed >= 0, --weight-limit >= 0")
    return Settings(
        host=a.host,
        port=a.port,
        markets=a.markets,
        seed=a.seed,
        api_key=a.api_key,
        api_secret=a.api_secret,
        weight_limit=a.weight_limit,
        ban_seconds=a.ban_seconds,
        ban_after=a.ban_after,
    )


async def serve(settings: Settings) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with ExchangeEmulator(settings) as emulator:
        print(f"exchange emulator listening on {emulator.url}", flush=True)
        await stop.wait()


def main(argv: list[str] | None = None) -> int:
    asyncio.run(serve(parse_args(argv)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
