"""Backups of trading bots' databases: recovery point, and the agent's CPU and memory.

    .venv/bin/python -m bench.backup [--bots 10] [--seconds 90] [--interval 5000]

A real controller runs one local pool (host processes; ports 29090-29199) of trading bots
(`freqtrade trade --dry-run`, DemoStrategy, 3 pairs each, against the exchange emulator),
twice: with backups every `--interval` ms (BACKUP_INTERVAL), and with backups off
(BACKUP_DIR=off). From the bots' creation until `--seconds` after every bot traded, the
live databases are watched every 0.1 s: the recovery point of a change is the time from
the change of a bot's database (its file's mtime: its creation, each trade opened, each
order) to the first snapshot in the target made after it. The agent's CPU time and memory
are measured over the `--seconds` of trading. Prints the recovery point (median, 95th
percentile, maximum), the agent's CPU time per bot and minute and its memory, with
backups and without, and the snapshots' size.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path

from bench.tools import cpu_seconds, percentile, rss_bytes
from common.logging import setup_logging
from common.restore_points import time_of
from tests.e2e.trading import wait_trading
from tests.exchange import EmulatorProcess, trading_bot
from tests.support import (
    ADMIN_TOKEN,
    ControllerHarness,
    kill_pools,
    make_settings,
    supervisor_processes,
)

DB = "tradesv3.dryrun.sqlite"


def agent_pid(pool_dir: Path) -> int:
    return supervisor_processes(pool_dir)["agent"]["pid"]


def db_mtime(path: Path) -> int | None:
    try:
        return path.stat().st_mtime_ns
    except FileNotFoundError:
        return None


def snapshots(directory: Path) -> list[float]:
    return sorted(time_of(p.name[: -len(".sqlite")]) for p in directory.glob("*.sqlite"))


async def watch(bots_dir: Path, target: Path, bots: list[str], stop: asyncio.Event) -> list[float]:
    """Recovery points: for each change of a bot's database (from its creation on, until
    `stop`), the time until the first snapshot made after it."""
    pending: dict[str, list[float]] = {b: [] for b in bots}  # changes not backed up yet
    last: dict[str, int | None] = dict.fromkeys(bots)
    lags: list[float] = []
    drain_until = float("inf")
    while time.monotonic() < drain_until and (not stop.is_set() or any(pending.values())):
        if stop.is_set() and drain_until == float("inf"):
            drain_until = time.monotonic() + 60  # bounded: what is left is reported below
        now = time.time()
        for bot in bots:
            mtime = db_mtime(bots_dir / bot / DB)
            if mtime != last[bot] and not stop.is_set():
                last[bot] = mtime
                pending[bot].append(now)
            if pending[bot]:
                made = snapshots(target / bot / DB)
                for change in list(pending[bot]):
                    after = [t for t in made if t >= change]
                    if after:
                        lags.append(after[0] - change)
                        pending[bot].remove(change)
        await asyncio.sleep(0.1)
    missed = sum(len(v) for v in pending.values())
    if missed:
        print(f"  {missed} changes not in any snapshot 60 s after the run")
    return lags


async def run(args: argparse.Namespace, exchange: EmulatorProcess, backups: bool) -> dict:
    bots = [f"bench-bk-{i}" for i in range(args.bots)]
    with tempfile.TemporaryDirectory(prefix="ftpool-bench-") as tmp:
        settings = make_settings(
            Path(tmp), POOL_RUNTIME="local", BOT_COMMAND="freqtrade trade", BOT_LAUNCH="preload",
            POOL_BASE_PORT="29100", MARKET_DATA_BASE_PORT="29090", MARKET_DATA_PROXY="true",
            MAX_BOTS_PER_CONTAINER=str(args.bots), HEARTBEAT_INTERVAL="5000",
            HEALTH_CHECK_INTERVAL="30000", BACKUP_INTERVAL=str(args.interval),
            BACKUP_DIR="" if backups else "off",
        )  # fmt: skip
        h = await ControllerHarness(settings).start()
        try:
            pool_dir = settings.pools_dir / "pool-1"
            target = settings.bot_base_dir / "backups" / "pools" / "pool-1"
            stop = asyncio.Event()
            watcher = (
                asyncio.create_task(watch(pool_dir / "bots", target, bots, stop))
                if backups
                else None
            )
            for bot in bots:
                await h.provision(ADMIN_TOKEN, **trading_bot(exchange.url, bot))
            await wait_trading(h, ADMIN_TOKEN, bots, timeout=300)
            pid = agent_pid(pool_dir)
            cpu0, t0 = cpu_seconds(pid), time.monotonic()
            await asyncio.sleep(args.seconds)
            elapsed = time.monotonic() - t0
            cpu = cpu_seconds(pid) - cpu0
            stop.set()
            lags = await watcher if watcher is not None else []
            sizes = [p.stat().st_size for p in target.glob(f"*/{DB}/*.sqlite")] if backups else []
            return {
                "lags": lags, "cpu_per_bot_minute": cpu / args.bots / elapsed * 60,
                "cpu_share": cpu / elapsed, "rss": rss_bytes(pid), "sizes": sizes,
                "snapshots": len(sizes),
            }  # fmt: skip
        finally:
            await h.stop()
            kill_pools(settings.bot_base_dir)


def report(args: argparse.Namespace, on: dict, off: dict) -> None:
    lags = on["lags"]
    print(f"{args.bots} trading bots, BACKUP_INTERVAL {args.interval} ms, {args.seconds:g} s each")
    if lags:
        print(f"recovery point over {len(lags)} database changes: median "
              f"{statistics.median(lags):.2f} s, p95 {percentile(lags, 95):.2f} s, "
              f"max {max(lags):.2f} s")  # fmt: skip
    else:
        print("recovery point: no database change seen")
    for name, r in (("backups on ", on), ("backups off", off)):
        print(f"{name}: agent CPU {r['cpu_share'] * 100:.2f} % of a core "
              f"({r['cpu_per_bot_minute'] * 1000:.1f} ms per bot and minute), "
              f"agent RSS {r['rss'] / 2**20:.1f} MiB")  # fmt: skip
    extra = on["cpu_per_bot_minute"] - off["cpu_per_bot_minute"]
    print(f"backups cost: {extra * 1000:.1f} ms CPU per bot and minute, "
          f"{(on['rss'] - off['rss']) / 2**20 / args.bots:+.2f} MiB agent RSS per bot")  # fmt: skip
    if on["sizes"]:
        median = statistics.median(on["sizes"]) / 1024
        print(f"{on['snapshots']} snapshots kept, median {median:.0f} KiB")


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bots", type=int, default=10)
    parser.add_argument("--seconds", type=float, default=90)
    parser.add_argument("--interval", type=int, default=5000)
    args = parser.parse_args()
    setup_logging("warning")
    with EmulatorProcess.start(markets=400, weight_limit=0) as exchange:
        on = await run(args, exchange, backups=True)
        off = await run(args, exchange, backups=False)
    report(args, on, off)


if __name__ == "__main__":
    asyncio.run(main())
