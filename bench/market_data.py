"""What N trading bots on the same pairs cost the exchange, without and with their pool's
market-data proxy.

    .venv/bin/python -m bench.market_data [--bots 1,10,30] [--pairs 20] [--markets 2000]
                                          [--minutes 3] [--modes off,on]
                                          [--quote-ttl 2000] [--candle-ttl 5000]
                                          [--ports 40000]

For each count of `--bots` and each mode, one pool (local runtime: real supervisord, real
`freqtrade trade --dry-run` bots with the DemoStrategy on 1m candles, forked by the pool's
preloader) trades the same `--pairs` pairs of one exchange emulator, every bot with the same
exchange URL in its config, as users of one exchange have. Groups run one after another, so
each has the emulator's address (and its weight per minute) to itself. Once every bot of a
group has a trade open, a window of `--minutes` is measured:

- upstream requests and weight per minute, as the emulator counted them for the group,
  and how many times one bot's without the proxy (the first group with `off`);
- 429 and 418 answers the emulator gave;
- with the proxy: its CPU (% of one core over the window) and its RSS at the end, and what
  the bots asked it (requests per minute: one bot's demand times N);
- the age of each bot's last loop (FreqTrade's /health `last_process`), sampled every 5 s:
  how long bots go between loops (median and max).

The emulator runs without a weight limit (a bench measures what bots ask, not what Binance
would refuse). Uses loopback ports from `--ports` (the proxy) and 100 above it (the bots);
the default is within the benchmarks' range (bench/tools.PORTS).
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.tools import PORTS, cpu_seconds, rss_bytes
from common.logging import setup_logging
from tests.e2e.trading import wait_trading
from tests.exchange import DEMO_STRATEGY, EmulatorProcess, exchange_config, pairs
from tests.support import (
    ADMIN_TOKEN,
    ControllerHarness,
    kill_pools,
    make_settings,
    supervisor_processes,
)

FREQTRADE = shutil.which("freqtrade", path=str(Path(sys.executable).parent)) or "freqtrade"
MIB = 2**20


@dataclass
class Group:
    bots: int
    mode: str  # "off" or "on"
    minutes: float = 0.0
    requests: int = 0  # upstream, as the emulator counted them
    weight: int = 0
    rejected: int = 0  # 429 and 418
    asked: int | None = None  # what the bots asked the proxy
    proxy_cpu: float | None = None  # % of one core
    proxy_rss: int | None = None
    loop_ages: tuple[float, float] | None = None  # median, max seconds since a bot's loop

    @property
    def client(self) -> str:
        return f"{self.mode}-{self.bots}"


def bot_body(url: str, bot: str, client: str, n_pairs: int) -> dict[str, Any]:
    config = exchange_config(url, pairs(n_pairs), client=client)
    config.update(max_open_trades=n_pairs, stake_amount=50, dry_run_wallet=1000)
    return {"instanceId": bot, "strategy": DEMO_STRATEGY, "config": config}


def counted(emulator: EmulatorProcess, client: str) -> tuple[int, int, int]:
    """(requests, weight, 429s and 418s) the emulator answered the client so far."""
    per_endpoint = emulator.stats()["clients"].get(client, {})
    requests = sum(c["requests"] for c in per_endpoint.values())
    weight = sum(c["weight"] for c in per_endpoint.values())
    statuses = emulator.stats()["totals"]["statuses"]
    return requests, weight, statuses.get("429", 0) + statuses.get("418", 0)


async def proxy_asked(h: ControllerHarness) -> int:
    status, body = await h.call("GET", "/api/pool/status")
    md = body["pools"][0]["marketData"] if status == 200 else None
    return sum(e["requests"] for e in (md or {"exchanges": {}})["exchanges"].values())


async def loop_age(h: ControllerHarness, bot: str) -> float | None:
    status, health = await h.call("GET", f"/api/bots/{bot}/health")
    stamp = health.get("last_process_ts") if status == 200 and health else None
    return time.time() - stamp if stamp else None


async def run_group(emulator: EmulatorProcess, group: Group, args: argparse.Namespace) -> None:
    base = Path(tempfile.mkdtemp(prefix="bench-market-data-"))
    settings = make_settings(
        base, BOT_COMMAND=f"{FREQTRADE} trade", BOT_LAUNCH="preload",
        MAX_BOTS_PER_CONTAINER=str(group.bots), POOL_BASE_PORT=str(args.ports + 100),
        MARKET_DATA_PROXY="true" if group.mode == "on" else "false",
        MARKET_DATA_BASE_PORT=str(args.ports), MARKET_DATA_QUOTE_TTL=str(args.quote_ttl),
        MARKET_DATA_CANDLE_TTL=str(args.candle_ttl), HEARTBEAT_INTERVAL="2000",
        HEALTH_CHECK_INTERVAL="600000", LOG_LEVEL="warning",
    )  # fmt: skip
    h = await ControllerHarness(settings).start()
    try:
        bots = [f"{group.client}-bot-{i}" for i in range(1, group.bots + 1)]
        for bot in bots:
            await h.provision(**bot_body(emulator.url, bot, group.client, args.pairs))
        await wait_trading(h, ADMIN_TOKEN, bots, timeout=900)
        proxy = None
        if group.mode == "on":
            programs = await asyncio.to_thread(supervisor_processes, h.pool_dir("pool-1"))
            proxy = programs["marketdata"]["pid"]
        requests0, weight0, rejected0 = await asyncio.to_thread(counted, emulator, group.client)
        asked0 = await proxy_asked(h)
        cpu0, started = (cpu_seconds(proxy) if proxy else 0.0), time.monotonic()
        ages: list[float] = []
        while time.monotonic() - started < args.minutes * 60:
            await asyncio.sleep(5)
            ages += [a for a in await asyncio.gather(*(loop_age(h, b) for b in bots)) if a]
        elapsed = time.monotonic() - started
        requests, weight, rejected = await asyncio.to_thread(counted, emulator, group.client)
        group.minutes = elapsed / 60
        group.requests, group.weight = requests - requests0, weight - weight0
        group.rejected = rejected - rejected0
        group.loop_ages = (statistics.median(ages), max(ages)) if ages else None
        if proxy:
            group.asked = await proxy_asked(h) - asked0
            group.proxy_cpu = 100 * (cpu_seconds(proxy) - cpu0) / elapsed
            group.proxy_rss = rss_bytes(proxy)
    finally:
        await h.stop()
        await asyncio.to_thread(kill_pools, base)
        shutil.rmtree(base, ignore_errors=True)


def report(groups: list[Group]) -> str:
    one = next((g for g in groups if g.mode == "off" and g.bots == 1), None)
    unit = one.requests / one.minutes if one and one.minutes else None
    lines = [
        f"{'bots':>4} {'proxy':>5} {'req/min':>8} {'weight/min':>10} {'x 1 bot':>8} "
        f"{'429/418':>7} {'asked/min':>9} {'proxy CPU':>9} {'proxy RSS':>9} {'loop age':>11}"
    ]
    for g in groups:
        per_min = g.requests / g.minutes if g.minutes else 0.0
        ratio = f"{per_min / unit:.2f}" if unit else "-"
        asked = f"{g.asked / g.minutes:.0f}" if g.asked is not None and g.minutes else "-"
        cpu = f"{g.proxy_cpu:.1f} %" if g.proxy_cpu is not None else "-"
        rss = f"{g.proxy_rss / MIB:.0f} MiB" if g.proxy_rss else "-"
        ages = f"{g.loop_ages[0]:.1f}/{g.loop_ages[1]:.1f} s" if g.loop_ages else "-"
        lines.append(
            f"{g.bots:>4} {g.mode:>5} {per_min:>8.1f} {g.weight / g.minutes:>10.0f} "
            f"{ratio:>8} {g.rejected:>7} {asked:>9} {cpu:>9} {rss:>9} {ages:>11}"
        )
    return "\n".join(lines)


async def main(args: argparse.Namespace) -> None:
    groups = [Group(n, mode) for n in args.bots for mode in args.modes]
    with EmulatorProcess.start(markets=args.markets, weight_limit=0) as emulator:
        for group in groups:
            print(f"[market_data] {group.bots} bots, proxy {group.mode} ...", file=sys.stderr)
            await run_group(emulator, group, args)
    print(
        f"{args.pairs} pairs, {args.markets} markets, quote lifetime {args.quote_ttl} ms, "
        f"candle lifetime {args.candle_ttl} ms, {args.minutes} min per group"
    )
    print(report(groups))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.market_data", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    p.add_argument("--bots", default="1,10,30", help="bot counts, comma-separated")
    p.add_argument("--pairs", type=int, default=20)
    p.add_argument("--markets", type=int, default=2000)
    p.add_argument("--minutes", type=float, default=3.0, help="measured window per group")
    p.add_argument("--modes", default="off,on", help="proxy off and/or on")
    p.add_argument("--quote-ttl", type=int, default=2000, help="MARKET_DATA_QUOTE_TTL, ms")
    p.add_argument("--candle-ttl", type=int, default=5000, help="MARKET_DATA_CANDLE_TTL, ms")
    p.add_argument("--ports", type=int, default=PORTS.start, help="first loopback port used")
    args = p.parse_args(argv)
    args.bots = [int(n) for n in args.bots.split(",")]
    args.modes = args.modes.split(",")
    if not all(0 < n <= 100 for n in args.bots) or not set(args.modes) <= {"off", "on"}:
        p.error("--bots are counts from 1 to 100 (one pool each), --modes off and/or on")
    return args


if __name__ == "__main__":
    setup_logging("warning")
    asyncio.run(main(parse_args()))
