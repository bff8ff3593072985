"""How fast lost bots come back: a killed bot, a killed agent, a removed pool container.

    .venv/bin/python -m bench.recovery [--bots 10] [--rounds 3] [--runtime docker|local]

A real controller (default HEARTBEAT_INTERVAL and POOL_GRACE) runs one pool of trading
bots (`freqtrade trade --dry-run`, DemoStrategy, 20 pairs each, against the exchange
emulator with 2,000 markets), forked by the pool's preloader; `--command webserver` runs
idle `freqtrade webserver` bots instead. The pool is a container (`--runtime docker`, the
default: needs Docker and `make images`; host loopback ports 9600+) or host processes
under a local supervisord (`--runtime local`: no Docker; ports 25900+; no pool-removal
round). Each round times, from the fault to the first proof of recovery:

- bot killed (`kill -9` of one bot's process) → that bot answers `/status` through the
  controller's proxy again, with the open trades it had (trading bots; webserver bots:
  its ping), broken into its stages (bench/stages.py): the exit seen by the agent and by
  the controller, the restart sent and applied, the new process, FreqTrade's API up, its
  first ping answered, the answer reported, the proxy forwarding;
- agent killed (`kill -9` of the pool's agent) → a new agent is connected and has applied
  the desired state (the bots ran on meanwhile, and must be the very same processes);
- pool removed (`docker rm -f` of the container) → seen as suspect, and every bot answers
  through the proxy again (`/status`, or ping), from a new container.

Prints the median and maximum of each.
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

from bench.stages import from_agent, from_controller, json_lines, sample, table
from common.logging import setup_logging
from tests.e2e.trading import trades
from tests.exchange import EmulatorProcess, trading_bot
from tests.support import (
    ADMIN_TOKEN,
    ControllerHarness,
    bot_processes,
    kill_pools,
    make_settings,
    supervisor_processes,
    wait_for,
)

CONTAINER = "freqtrade-pool-pool-1"


class Pool:
    """The one pool of a run, as the bench reaches into it: its bots' and agent's process
    ids, the agent's log, and (docker) its removal."""

    def __init__(self, runtime: str, pool_dir: Path) -> None:
        self.runtime = runtime
        self.pool_dir = pool_dir
        self.client = docker.from_env() if runtime == "docker" else None

    def bot_pids(self) -> dict[str, list[int]]:
        # A container's processes show the container's paths to the host.
        bots = Path("/pool/bots") if self.client else self.pool_dir / "bots"
        return bot_processes(bots, "freqtrade")

    def agent_pid(self) -> int:
        if self.client is None:
            return supervisor_processes(self.pool_dir)["agent"]["pid"]
        rows = self.client.containers.get(CONTAINER).top(ps_args="-eo pid,args")["Processes"]
        return int(next(pid for pid, args in rows if args.endswith("-m agent")))

    def agent_log(self, since: float) -> str:
        if self.client is None:
            return (self.pool_dir / "logs" / "agent.log").read_text()
        logs = self.client.containers.get(CONTAINER).logs(since=int(since) - 1)
        return logs.decode(errors="replace")

    def remove(self) -> None:
        assert self.client is not None
        self.client.containers.get(CONTAINER).remove(force=True)

    def close(self) -> None:
        if self.client is not None:
            for c in self.client.containers.list(all=True, filters={"name": CONTAINER}):
                c.remove(force=True)


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
    parser.add_argument("--runtime", choices=("docker", "local"), default="docker")
    args = parser.parse_args()
    setup_logging("warning")
    with EmulatorProcess.start(markets=2000, weight_limit=0) as exchange:
        await run(args, exchange)


async def run(args: argparse.Namespace, exchange: EmulatorProcess) -> None:
    bots = [f"bench-rec-{i}" for i in range(args.bots)]
    local = args.runtime == "local"
    results: dict[str, list[float]] = {"bot": [], "agent": [], "pool seen": [], "pool back": []}
    stages: list[dict[str, float]] = []
    with tempfile.TemporaryDirectory(prefix="ftpool-bench-") as tmp:
        settings = make_settings(
            Path(tmp), POOL_RUNTIME=args.runtime, BOT_COMMAND=f"freqtrade {args.command}",
            BOT_LAUNCH="preload", POOL_BASE_PORT="25900" if local else "9600",
            MAX_BOTS_PER_CONTAINER=str(args.bots), HEARTBEAT_INTERVAL="5000",
            POOL_GRACE="20000", HEALTH_CHECK_INTERVAL="30000",
            LOG_LEVEL="info",  # the agents': their lines time the stages
            MARKET_DATA_PROXY="true",  # as pools run by default
        )  # fmt: skip
        pool = Pool(args.runtime, settings.pools_dir / "pool-1")
        h = await ControllerHarness(settings).start()
        assert h.http is not None

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

        async def killed_bot(victim: str) -> dict[str, float]:
            """Kill the victim; each stage of its way back, in seconds after the kill."""
            info = await h.bot(victim)
            old, port = info["process"]["pid"], info["port"]

            async def api_up() -> bool:
                url = f"http://127.0.0.1:{port}/api/v1/ping"
                async with h.http.get(url, timeout=1) as r:  # type: ignore[union-attr]
                    return r.status == 200

            async def reported() -> bool:
                process = (await h.bot(victim))["process"] or {}
                return process.get("pid") not in (None, old) and process["ping"]["ok"] is True

            pid = pool.bot_pids()[victim][0]
            killed = time.time()
            os.kill(pid, signal.SIGKILL)
            checks = {"FreqTrade API up": api_up, "answer reported": reported,
                      "proxy forwards": partial(answers, victim)}  # fmt: skip
            found = await sample(checks, "proxy forwards", 180)
            events = (await h.call("GET", "/api/pool/events/history?limit=1000"))[1]["events"]
            found |= from_controller(events, victim, killed)
            found |= from_agent(json_lines(pool.agent_log(killed)), victim, killed)
            return {"killed": 0.0} | {stage: when - killed for stage, when in found.items()}

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
                stages.append(await killed_bot(victim))
                results["bot"].append(stages[-1]["proxy forwards"])
                if kept:
                    await assert_kept(victim, kept)
                await wait_for(all_answer, 120)

                before = pool.bot_pids()
                since = await connected_at()
                kill = partial(os.kill, pool.agent_pid(), signal.SIGKILL)
                results["agent"].append(await timed(kill, partial(agent_back, since)))
                if pool.bot_pids() != before:
                    raise AssertionError("bots were restarted when only the agent died")
                if local:
                    continue

                async def suspect() -> bool:
                    _, body = await h.call("GET", "/api/pool/status")
                    return body["pools"][0]["status"] == "suspect"

                started = time.perf_counter()
                pool.remove()
                await wait_for(suspect, 60, step=0.02)
                results["pool seen"].append(time.perf_counter() - started)
                await wait_for(all_answer, 180, step=0.02)
                results["pool back"].append(time.perf_counter() - started)
                if any(len(p) != 1 for p in pool.bot_pids().values()):
                    raise AssertionError("a bot runs twice")
        finally:
            await h.stop()
            pool.close()
            if local:
                kill_pools(Path(tmp))
    what = f"trading bots ({args.pairs} pairs)" if trading else "freqtrade webserver bots"
    print(f"bench/recovery: {args.rounds} rounds, one {args.runtime} pool of {args.bots} "
          f"{what}, HEARTBEAT_INTERVAL 5 s, POOL_GRACE 20 s")  # fmt: skip
    labels = {
        "bot": "bot killed → /status with its trades" if trading else "bot killed → answering",
        "agent": "agent killed → new agent applied",
        "pool seen": "pool removed → seen as suspect",
        "pool back": f"pool removed → all {args.bots} bots answering",
    }
    for key, label in labels.items():
        s = sorted(results[key])
        if s:
            print(f"{label:42} median {statistics.median(s):6.2f} s   max {s[-1]:6.2f} s")
    print("bot killed → answering through the proxy, by stage:")
    print("\n".join(table(stages)))


async def _nonempty(value: Awaitable[set[int] | None]) -> bool:
    return bool(await value)


if __name__ == "__main__":
    asyncio.run(main())
