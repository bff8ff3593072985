"""How fast lost bots come back: a killed bot, a killed agent, a removed pool container.

    .venv/bin/python -m bench.recovery [--bots 10] [--rounds 3]

A real controller (docker runtime, default HEARTBEAT_INTERVAL and POOL_GRACE) runs one pool
of trading bots (`freqtrade trade --dry-run`, DemoStrategy, 20 pairs each, against the
exchange emulator with 2,000 markets), forked by the pool's preloader; `--command webserver`
runs idle `freqtrade webserver` bots instead. Each round times, from the fault to the first
proof of recovery, polling every 20 ms:

- bot killed (`kill -9` of one bot's process) → that bot answers `/status` through the
  controller's proxy again, with the open trades it had (trading bots; webserver bots:
  its ping);
- agent killed (`kill -9` of the pool's agent) → a new agent is connected and has applied
  the desired state (the bots ran on meanwhile, and must be the very same processes);
- pool removed (`docker rm -f` of the container) → seen as suspect, and every bot answers
  through the proxy again (`/status`, or ping), from a new container.

Prints the median and maximum of each. Needs Docker and `make images`; uses host loopback
ports 9600+.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from functools import partial
from pathlib import Path

import docker

from common.logging import setup_logging
from tests.e2e.trading import trades
from tests.exchange import EmulatorProcess, trading_bot
from tests.support import ADMIN_TOKEN, ControllerHarness, bot_processes, make_settings, wait_for

CONTAINER = "freqtrade-pool-pool-1"


def host_pids() -> dict[str, list[int]]:
    """Host pids of each bot's freqtrade process in the pool container."""
    return bot_processes(Path("/pool/bots"), "freqtrade")


def pool_agent_pid(client: docker.DockerClient) -> int:
    rows = client.containers.get(CONTAINER).top(ps_args="-eo pid,args")["Processes"]
    return int(next(pid for pid, args in rows if args.endswith("-m agent")))


async def timed(fault: Callable[[], None], recovered: Callable[[], Awaitable[bool]]) -> float:
    started = time.perf_counter()
    fault()
    await wait_for(recovered, 180, step=0.02)
    return time.perf_counter() - started


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bots", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--pairs", type=int, default=20)
    parser.add_argument("--command", choices=("trade", "webserver"), default="trade")
    args = parser.parse_args()
    setup_logging("warning")
    with EmulatorProcess.start(markets=2000, weight_limit=0) as exchange:
        await run(args, exchange)


async def run(args: argparse.Namespace, exchange: EmulatorProcess) -> None:
    client = docker.from_env()
    bots = [f"bench-rec-{i}" for i in range(args.bots)]
    results: dict[str, list[float]] = {"bot": [], "agent": [], "pool seen": [], "pool back": []}
    with tempfile.TemporaryDirectory(prefix="ftpool-bench-") as tmp:
        settings = make_settings(
            Path(tmp), POOL_RUNTIME="docker", BOT_COMMAND=f"freqtrade {args.command}",
            BOT_LAUNCH="preload", POOL_BASE_PORT="9600", MAX_BOTS_PER_CONTAINER=str(args.bots),
            HEARTBEAT_INTERVAL="5000", POOL_GRACE="20000", HEALTH_CHECK_INTERVAL="30000",
        )  # fmt: skip
        h = await ControllerHarness(settings).start()

        trading = args.command == "trade"

        async def open_trades(bot: str) -> set[int] | None:
            status, body = await h.call("GET", f"/api/bots/{bot}/status")
            return {t["trade_id"] for t in body} if status == 200 else None

        async def answers(bot: str) -> bool:
            path = "status" if trading else "ping"
            return (await h.call("GET", f"/api/bots/{bot}/{path}"))[0] == 200

        async def assert_kept(bot: str, kept: set[int]) -> None:
            """Every trade open before the kill is still there (open, or closed since)."""
            now = set(await trades(h, ADMIN_TOKEN, bot))
            if not kept <= now:
                raise AssertionError(f"{bot} lost trades: {kept} vs {now}")

        async def all_answer() -> bool:
            return all(await asyncio.gather(*(answers(b) for b in bots)))

        async def connected_at() -> float:
            return (await h.call("GET", "/api/agents"))[1]["agents"][0]["connectedAt"]

        async def agent_back(old_connected_at: float) -> bool:
            agent = (await h.call("GET", "/api/agents"))[1]["agents"][0]
            return (
                agent["connected"] and agent["connectedAt"] > old_connected_at
                and agent["appliedGeneration"] >= agent["generation"]
            )  # fmt: skip

        try:
            for bot in bots:
                body = trading_bot(exchange.url, bot, args.pairs) if trading else {}
                await h.provision(**{"instanceId": bot, **body})
            await wait_for(all_answer, 600, step=0.5)
            for round_ in range(args.rounds):
                victim = bots[round_ % len(bots)]
                if trading:  # a bot with open trades, to see them again after its restart
                    await wait_for(lambda v=victim: _nonempty(open_trades(v)), 300, step=1)
                kept = await open_trades(victim) if trading else None
                pid = host_pids()[victim][0]
                kill = partial(os.kill, pid, signal.SIGKILL)
                results["bot"].append(await timed(kill, partial(answers, victim)))
                if kept:
                    await assert_kept(victim, kept)
                await wait_for(all_answer, 120)

                before = host_pids()
                since = await connected_at()
                agent_pid = pool_agent_pid(client)
                kill = partial(os.kill, agent_pid, signal.SIGKILL)
                results["agent"].append(await timed(kill, partial(agent_back, since)))
                if host_pids() != before:
                    raise AssertionError("bots were restarted when only the agent died")

                async def suspect() -> bool:
                    _, body = await h.call("GET", "/api/pool/status")
                    return body["pools"][0]["status"] == "suspect"

                started = time.perf_counter()
                client.containers.get(CONTAINER).remove(force=True)
                await wait_for(suspect, 60, step=0.02)
                results["pool seen"].append(time.perf_counter() - started)
                await wait_for(all_answer, 180, step=0.02)
                results["pool back"].append(time.perf_counter() - started)
                if any(len(p) != 1 for p in host_pids().values()):
                    raise AssertionError("a bot runs twice")
        finally:
            await h.stop()
            for c in client.containers.list(all=True, filters={"name": CONTAINER}):
                c.remove(force=True)
    what = f"trading bots ({args.pairs} pairs)" if trading else "freqtrade webserver bots"
    print(f"bench/recovery: {args.rounds} rounds, one pool of {args.bots} {what}, "
          "HEARTBEAT_INTERVAL 5 s, POOL_GRACE 20 s")  # fmt: skip
    labels = {
        "bot": "bot killed → /status with its trades" if trading else "bot killed → answering",
        "agent": "agent killed → new agent applied",
        "pool seen": "pool removed → seen as suspect",
        "pool back": f"pool removed → all {args.bots} bots answering",
    }
    for key, label in labels.items():
        s = sorted(results[key])
        print(f"{label:42} median {statistics.median(s):6.2f} s   max {s[-1]:6.2f} s")


async def _nonempty(value: Awaitable[set[int] | None]) -> bool:
    return bool(await value)


if __name__ == "__main__":
    asyncio.run(main())
