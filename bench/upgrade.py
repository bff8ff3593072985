"""How long each bot does not answer while its pool is upgraded to a new image, and how
long the whole fleet takes.

    .venv/bin/python -m bench.upgrade [--bots 30 --per-pool 10 --pairs 20 --concurrency 1]
                                      [--method recreate|move|both]

A real controller (docker runtime, preloading) provisions `--bots` real trading bots
(`freqtrade trade --dry-run`, DemoStrategy, `--pairs` pairs, against the exchange
emulator with 2,000 markets), `--per-pool` to a pool, and waits until each has traded.
Then it builds a second tag of the pool image (FROM freqtrade-pool:latest, one label and
one file more) and upgrades every pool to it through POST /api/pool/upgrade (what
`ftpool upgrade --execute` calls) by `--method`: `recreate` (each pool's container
recreated in place) or `move` (each pool's bots moved one at a time into a fresh pool on
the new image); `both` upgrades the same fleet twice, back to back: recreate to that tag,
then move to a third one. From each run's record it prints, median and maximum:

- per bot: recreate, from the stop of its pool's old container, move, from its hold
  (its old copy told to stop), to its first answered ping on the new image (neither copy
  serves it meanwhile);
- per pool: from its first bot going down to its last bot answering;
- the fleet: the whole run.

Every trade a bot had before must still be there after each run (checked, not timed).

Needs Docker and `make images`; uses host loopback ports 29500-29999.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import statistics
import tempfile
from pathlib import Path

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

IMAGE_A = "freqtrade-pool:latest"
IMAGE_B = "freqtrade-pool:bench-b"
IMAGE_C = "freqtrade-pool:bench-c"


def dockerfile(tag: str) -> bytes:
    """A second (third) tag of the pool image: one label and one file more."""
    steps = [f"FROM {IMAGE_A}", f"LABEL ftpool.bench-image={tag}",
             f"RUN echo {tag} > /etc/ftpool-bench"]  # fmt: skip
    return "\n".join([*steps, ""]).encode()


def report(name: str, values: list[float]) -> None:
    print(f"{name:<24} median {statistics.median(values):7.2f} s   max {max(values):7.2f} s")


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bots", type=int, default=30)
    parser.add_argument("--per-pool", type=int, default=10)
    parser.add_argument("--pairs", type=int, default=20)
    parser.add_argument("--concurrency", type=int, default=1)
    parser.add_argument("--method", choices=("recreate", "move", "both"), default="both")
    args = parser.parse_args()
    setup_logging("warning")
    client = docker.from_env(timeout=300)
    for tag, image in (("b", IMAGE_B), ("c", IMAGE_C)):
        client.images.build(fileobj=io.BytesIO(dockerfile(tag)), tag=image, rm=True)
    with EmulatorProcess.start(markets=2000, weight_limit=0) as exchange:
        await run(args, client, exchange)


async def run(args: argparse.Namespace, client: docker.DockerClient, exchange) -> None:
    bots = [f"bench-up-{i}" for i in range(args.bots)]
    records: list[tuple[str, dict]] = []
    with tempfile.TemporaryDirectory(prefix="ftpool-bench-") as tmp:
        settings = make_settings(
            Path(tmp), POOL_RUNTIME="docker", POOL_IMAGE=IMAGE_A, POOL_NETWORK="host",
            BOT_COMMAND="freqtrade trade", BOT_LAUNCH="preload", POOL_BASE_PORT="29600",
            MARKET_DATA_PROXY="true", MARKET_DATA_BASE_PORT="29500",
            MAX_BOTS_PER_CONTAINER=str(args.per_pool), HEARTBEAT_INTERVAL="2000",
            POOL_GRACE="20000", PROXY_TIMEOUT="60000",  # 30 bots starting on 2 cores
        )  # fmt: skip
        h = await ControllerHarness(settings).start()
        try:
            for bot in bots:
                body = trading_bot(exchange.url, bot, args.pairs)
                await h.provision(**{"instanceId": bot, **body})
            await wait_trading(h, ADMIN_TOKEN, bots, timeout=900)
            kept = {b: set(await trades(h, ADMIN_TOKEN, b)) for b in bots}
            methods = ["recreate", "move"] if args.method == "both" else [args.method]
            for method, image in zip(methods, (IMAGE_B, IMAGE_C), strict=False):
                since = await last_event_id(h)
                record = await upgrade(h, image, method, args.concurrency)
                record["monitor_restarts"] = await restarts_since(h, since)
                records.append((method, record))
                for bot in bots:
                    if not kept[bot] <= set(await trades(h, ADMIN_TOKEN, bot)):
                        raise AssertionError(f"{bot} lost trades ({method})")
        finally:
            await h.stop()
            remove_pool_containers(client, tmp)
    print(f"bench/upgrade: {args.bots} trading bots ({args.pairs} pairs), {args.per_pool} "
          f"to a pool, {args.concurrency} pool(s) at a time")  # fmt: skip
    for method, record in records:
        pools = record["pools"]
        print(f"-- {method}: {len(pools)} pools")
        report("per bot: unanswered", [s for p in pools for s in p["bot_downtime_s"].values()])
        report("per pool: unanswered", [p["downtime_s"] for p in pools])
        print(f"{'fleet: whole run':<24} {record['finished_at'] - record['started_at']:7.2f} s")
        restarted = record["monitor_restarts"]
        print(f"{'monitor restarts':<24} {len(restarted)}  {' '.join(restarted)}")


async def last_event_id(h: ControllerHarness) -> int:
    _, body = await h.call("GET", "/api/pool/events/history?limit=1")
    return body["events"][-1]["id"] if body["events"] else 0


async def restarts_since(h: ControllerHarness, since: int) -> list[str]:
    """The monitor's automatic bot restarts after event `since`, as bot:reason (an upgrade
    restarts nothing itself: each one is a bot the monitor judged down meanwhile)."""
    found: list[str] = []
    while True:
        _, body = await h.call("GET", f"/api/pool/events/history?limit=1000&since={since}")
        events = body["events"]
        found += [f"{e['instanceId']}:{e['reason']}" for e in events if e["type"] == "bot_restart"]
        if len(events) < 1000:
            return found
        since = events[-1]["id"]


async def upgrade(h: ControllerHarness, image: str, method: str, concurrency: int) -> dict:
    """Every pool upgraded to `image` by `method`; the run's record."""
    status, body = await h.call("POST", "/api/pool/upgrade",
                                json={"image": image, "concurrency": concurrency,
                                      "timeout": 600, "method": method})  # fmt: skip
    if status != 202:
        raise AssertionError(f"upgrade: {status} {body}")
    run_id = body["run"]["id"]

    async def finished() -> dict | None:
        _, status = await h.call("GET", "/api/pool/upgrade")
        record = next(r for r in status["runs"] if r["id"] == run_id)
        return record if record["finished_at"] else None

    record = await wait_for(finished, 3600, step=1)
    if record["outcome"] != "upgraded":
        raise AssertionError(f"upgrade ({method}) ended {record['outcome']}: {record['reason']}")
    return record


if __name__ == "__main__":
    asyncio.run(main())
