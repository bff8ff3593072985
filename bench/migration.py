"""How long a bot takes to migrate from its legacy container into a pool, and back, and how
long it does not answer meanwhile.

    .venv/bin/python -m bench.migration [--bots 5]

A real controller (docker runtime) provisions `--bots` real trading bots (`freqtrade trade
--dry-run`, DemoStrategy, 20 pairs, against the exchange emulator with 2,000 markets;
`--command webserver` for idle bots) with POOL_MODE_ENABLED=false, one legacy container
each, waits until each has traded, then migrates them into one pool and
rolls each back into a legacy container of its own, one bot at a time through the
migration API (what `ftpool migrate --execute` and `--rollback` call). From each run's
steps in the migration log it prints, median and maximum:

- run: the whole run, from the first step to the last;
- unanswered: from the start of the stop step to the end of verification, the time in
  which neither copy serves the bot's API (verification ends at the new copy's first
  answered ping);
- each step's own time.

After each move, every trade the bot had before it must still be there (checked, not
timed).

Needs Docker and `make images`; uses host loopback ports 9700+.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
from pathlib import Path
from typing import Any

import docker

from common.logging import setup_logging
from tests.e2e.trading import trades, wait_trading
from tests.exchange import EmulatorProcess, trading_bot
from tests.support import (
    ADMIN_TOKEN,
    ControllerHarness,
    make_settings,
    remove_pool_containers,
    wait_for,
)


def figures(run: dict[str, Any]) -> tuple[float, float]:
    """(whole run, unanswered) in seconds, from the run's logged steps."""
    steps = {s["name"]: s for s in run["steps"]}
    if run["outcome"] not in ("migrated", "rolled_back") or "verify" not in steps:
        raise AssertionError(f"run {run['id']} ended {run['outcome']}: {run['reason']}")
    verified = steps["verify"]["started_at"] + steps["verify"]["ms"] / 1000
    return run["finished_at"] - run["started_at"], verified - steps["stop"]["started_at"]


def report(name: str, values: list[float]) -> None:
    print(f"{name:<24} median {statistics.median(values):6.2f} s   max {max(values):6.2f} s")


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bots", type=int, default=5)
    parser.add_argument("--pairs", type=int, default=20)
    parser.add_argument("--command", choices=("trade", "webserver"), default="trade")
    args = parser.parse_args()
    setup_logging("warning")
    with EmulatorProcess.start(markets=2000, weight_limit=0) as exchange:
        await run(args, exchange)


async def run(args: argparse.Namespace, exchange: EmulatorProcess) -> None:
    client = docker.from_env()
    trading = args.command == "trade"
    bots = [f"bench-mig-{i}" for i in range(args.bots)]
    results: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory(prefix="ftpool-bench-") as tmp:
        settings = make_settings(
            Path(tmp), POOL_RUNTIME="docker", BOT_COMMAND=f"freqtrade {args.command}",
            BOT_LAUNCH="preload", POOL_BASE_PORT="9700", MAX_BOTS_PER_CONTAINER=str(args.bots),
            POOL_MODE_ENABLED="false", HEARTBEAT_INTERVAL="5000", POOL_GRACE="20000",
        )  # fmt: skip
        h = await ControllerHarness(settings).start()

        async def all_answer() -> bool:
            answers = [await h.call("GET", f"/api/bots/{b}/ping") for b in bots]
            return all(status == 200 for status, _ in answers)

        async def trade_ids(bot: str) -> set[int]:
            return set(await trades(h, ADMIN_TOKEN, bot))

        try:
            for bot in bots:
                body = trading_bot(exchange.url, bot, args.pairs) if trading else {}
                await h.provision(**{"instanceId": bot, **body})
            if trading:
                await wait_trading(h, ADMIN_TOKEN, bots, timeout=600)
            else:
                await wait_for(all_answer, 600, step=1)
            for kind, path in (("migrate", ""), ("rollback", "/rollback")):
                for bot in bots:
                    kept = await trade_ids(bot) if trading else set()
                    status, body = await h.call("POST", f"/api/pool/migration/bots/{bot}{path}")
                    if status != 200 or not body["success"]:
                        raise AssertionError(f"{kind} {bot}: {status} {body}")
                    if not kept <= await trade_ids(bot):
                        raise AssertionError(f"{kind} {bot} lost trades")
                    whole, unanswered = figures(body["run"])
                    results.setdefault(f"{kind}: run", []).append(whole)
                    results.setdefault(f"{kind}: unanswered", []).append(unanswered)
                    for step in body["run"]["steps"]:
                        results.setdefault(f"  {kind} {step['name']}", []).append(step["ms"] / 1000)
                await wait_for(all_answer, 120, step=0.5)
        finally:
            await h.stop()
            remove_pool_containers(client, tmp)
    what = f"trading bots ({args.pairs} pairs)" if trading else "freqtrade webserver bots"
    print(f"bench/migration: {args.bots} {what}, one at a time")
    for name, values in results.items():
        report(name, values)


if __name__ == "__main__":
    asyncio.run(main())
