"""Memory of N real trading bots: pooled in one container vs. legacy, one container each.

    .venv/bin/python -m bench.memory [--bots 10] [--pairs 20] [--markets 2000]
                                     [--minutes 5,15] [--layouts shared,unshared,legacy]
                                     [--command trade|webserver] [--shared-markets on|off]
                                     [--immortal auto|on|off]

Real `freqtrade trade --dry-run` bots (DemoStrategy, 1m candles) trade against the exchange
emulator (`python -m tests.exchange`, 2,000 markets by default), each on its own `--pairs`
pairs, in three layouts side by side, started together and measured after each of
`--minutes` of trading:

- pooled, shared: one pool container whose bots are forked by its preloader (the default);
- pooled, unshared: one pool container of plain processes (its launch set to `exec`);
- legacy: one bare container per bot running `freqtrade trade` on a copy of a pooled
  bot's directory (the seed's layout).

Each layout is measured with Docker's own accounting (`docker stats`: usage minus inactive
page cache, summed over its containers), the PSS of every process in its containers
(shared pages split fairly), and the USS of each bot process (its private pages: what one
more bot costs). With several `--bots` counts, "+per bot" is the growth between counts.
`--command webserver` runs idle `freqtrade webserver` bots instead, for comparison.
`--shared-markets on` (the default) has the pool's preloader load the emulator's market list
once for its bots to adopt (`PRELOAD_MARKETS`); `off` measures without. `--immortal` is the
pools' `PRELOAD_IMMORTAL` (default auto: the preloader makes its objects immortal where the
image's Python allows it).
Needs Docker and `make images`; uses host loopback ports 9300-9599.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import shutil
import statistics
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import docker

from common.logging import setup_logging
from tests.exchange import EmulatorProcess, trading_bot
from tests.exchange.botconfig import CCXT_OPTIONS, api_urls
from tests.support import ControllerHarness, bot_processes, make_settings, user_token, wait_for

IMAGE = "freqtrade-pool:latest"
POOLED_PORT, LEGACY_PORT = 9300, 9500
MIB = 2**20
LAYOUTS = ("shared", "unshared", "legacy")
LABELS = {"shared": "pooled, shared", "unshared": "pooled, unshared", "legacy": "legacy"}


@dataclass
class Figures:
    """One layout at one moment: docker stats, PSS of all processes, USS of each bot."""

    used: int
    pss: int
    uss: list[int] = field(default_factory=list)


def docker_memory(container) -> int:
    """What `docker stats` shows: usage minus the reclaimable inactive file cache."""
    raw = container.client.api.stats(container.id, stream=False, one_shot=True)
    mem = raw["memory_stats"]
    stats = mem.get("stats", {})
    return mem["usage"] - stats.get("inactive_file", stats.get("total_inactive_file", 0))


def rollup(pid: int) -> dict[str, int]:
    """/proc/<pid>/smaps_rollup in bytes (empty for a process that is gone)."""
    try:
        text = Path(f"/proc/{pid}/smaps_rollup").read_text()
    except OSError:
        return {}
    fields = {}
    for line in text.splitlines()[1:]:
        key, value, *_ = line.split()
        fields[key.rstrip(":")] = int(value) * 1024
    return fields


def uss(pid: int) -> int:
    r = rollup(pid)
    return r.get("Private_Clean", 0) + r.get("Private_Dirty", 0)


def measure(containers: list, bot_pids: list[int]) -> Figures:
    for c in containers:
        c.reload()
    pids = [int(row[0]) for c in containers for row in c.top(ps_args="-eo pid")["Processes"]]
    return Figures(
        used=sum(docker_memory(c) for c in containers),
        pss=sum(rollup(p).get("Pss", 0) for p in pids),
        uss=[uss(p) for p in bot_pids],
    )


def pooled_bot_pids(bots: list[str]) -> list[int]:
    """Host pids of the bots' own processes (not their launchers) in the pool containers."""
    found = bot_processes(Path("/pool/bots"), "freqtrade")
    return [found[b][0] for b in bots if b in found]


def legacy_bot_pid(container) -> int:
    rows = container.top(ps_args="-eo pid,args")["Processes"]
    return int(next(pid for pid, args in rows if "freqtrade" in args))


class Run:
    """All layouts of one bot count, started together and measured together."""

    def __init__(self, base: Path, exchange: EmulatorProcess, args: argparse.Namespace, n: int):
        self.base, self.exchange, self.args, self.n = base, exchange, args, n
        self.docker = docker.from_env()
        self.token = user_token("bench")
        self.harness: ControllerHarness | None = None
        self.bots = {layout: [f"{layout}-{i}" for i in range(n)] for layout in LAYOUTS}
        self.legacy: list = []

    def body(self, bot: str) -> dict:
        body = trading_bot(self.exchange.url, bot, self.args.pairs)
        if self.args.command == "webserver":
            body.pop("config")
        return body

    def preload_markets(self) -> str:
        """PRELOAD_MARKETS: the emulator's Binance, fetched as the bots fetch it."""
        if self.args.shared_markets == "off" or self.args.command != "trade":
            return ""
        config = {"urls": {"api": api_urls(self.exchange.url)}, "options": CCXT_OPTIONS}
        return json.dumps([{"exchange": "binance", "ccxt_config": config}])

    async def start_pooled(self) -> None:
        settings = make_settings(
            self.base / "pooled", POOL_RUNTIME="docker", POOL_IMAGE=IMAGE, BOT_LAUNCH="preload",
            BOT_COMMAND=f"freqtrade {self.args.command}", MAX_BOTS_PER_CONTAINER=str(self.n),
            POOL_BASE_PORT=str(POOLED_PORT), HEARTBEAT_INTERVAL="5000",
            BOT_PING_TIMEOUT="5000", LOG_LEVEL="error", PRELOAD_MARKETS=self.preload_markets(),
            PRELOAD_IMMORTAL=self.args.immortal,
        )  # fmt: skip
        self.harness = h = await ControllerHarness(settings).start()
        # The shared bots fill pool-1, the unshared ones pool-2, which then runs them plainly.
        for layout in ("shared", "unshared"):
            if layout in self.args.layouts:
                for bot in self.bots[layout]:
                    await h.provision(self.token, **self.body(bot))
        if "unshared" in self.args.layouts:
            status, body = await h.call(
                "PUT", "/api/pool/pools/pool-2/launch", json={"launch": "exec"}
            )
            assert status == 200, body

    def start_legacy(self) -> None:
        """Bare containers on copies of the shared bots' directories, on ports of their own."""
        for slot, bot in enumerate(self.bots["shared"]):
            source = self.base / "pooled" / "pools" / "pool-1" / "bots" / bot
            target = self.base / "legacy" / bot
            shutil.copytree(
                source / "user_data" / "strategies", target / "user_data" / "strategies"
            )
            config = json.loads((source / "config.json").read_text())
            config["api_server"]["listen_port"] = LEGACY_PORT + slot
            (target / "config.json").write_text(json.dumps(config))
            shutil.chown(target, 20000 + slot, 20000 + slot)
            for path in target.rglob("*"):
                shutil.chown(path, 20000 + slot, 20000 + slot)
            self.legacy.append(self.docker.containers.run(
                IMAGE, [self.args.command, "--config", "config.json"], entrypoint="freqtrade",
                name=f"ftpool-bench-legacy-{slot}", user=str(20000 + slot),
                environment={"HOME": "/bot"}, working_dir="/bot",
                volumes={str(target): {"bind": "/bot", "mode": "rw"}}, network_mode="host",
                healthcheck={"test": ["NONE"]}, detach=True,
            ))  # fmt: skip

    async def all_answer(self) -> bool:
        h = self.harness
        assert h is not None
        pooled = [b for layout in ("shared", "unshared") if layout in self.args.layouts
                  for b in self.bots[layout]]  # fmt: skip
        for bot in pooled:
            info = await h.bot(bot)
            proc = info["process"]
            if not proc or proc["state"] != "RUNNING" or not proc["ping"]["ok"]:
                return False
        for c in self.legacy:
            c.reload()
            if c.status != "running":
                raise AssertionError(f"{c.name} stopped: {c.logs(tail=20).decode()}")
        return await asyncio.to_thread(self.legacy_answer)

    def legacy_answer(self) -> bool:
        for slot in range(len(self.legacy)):
            try:
                with urllib.request.urlopen(
                    f"http://127.0.0.1:{LEGACY_PORT + slot}/api/v1/ping", timeout=2
                ):
                    pass
            except OSError:
                return False
        return True

    def measure(self) -> dict[str, Figures]:
        figures = {}
        if "shared" in self.args.layouts:
            pool = self.docker.containers.get("freqtrade-pool-pool-1")
            figures["shared"] = measure([pool], pooled_bot_pids(self.bots["shared"]))
        if "unshared" in self.args.layouts:
            pool = self.docker.containers.get("freqtrade-pool-pool-2")
            figures["unshared"] = measure([pool], pooled_bot_pids(self.bots["unshared"]))
        if self.legacy:
            figures["legacy"] = measure(self.legacy, [legacy_bot_pid(c) for c in self.legacy])
        return figures

    async def run(self) -> dict[int, dict[str, Figures]]:
        try:
            await self.start_pooled()
            await wait_for(self.all_answer, 600, step=2)  # the agent has written their files
            if "legacy" in self.args.layouts:
                await asyncio.to_thread(self.start_legacy)  # off the loop, as measuring
                await wait_for(self.all_answer, 600, step=2)
            started = time.monotonic()
            results = {}
            for minute in self.args.minutes:
                await asyncio.sleep(max(0.0, started + 60 * minute - time.monotonic()))
                # Off the loop: measuring dozens of containers takes minutes on a busy
                # machine, and this loop also runs the controller the pools report to.
                results[minute] = await asyncio.to_thread(self.measure)
            return results
        finally:
            await self.stop()

    async def stop(self) -> None:
        if self.harness is not None:
            await self.harness.stop()
        for c in self.legacy:
            with contextlib.suppress(docker.errors.APIError):
                c.remove(force=True)
        for name in ("freqtrade-pool-pool-1", "freqtrade-pool-pool-2"):
            with contextlib.suppress(docker.errors.NotFound):
                self.docker.containers.get(name).remove(force=True)


def report(args: argparse.Namespace, results: dict[int, dict[int, dict[str, Figures]]]) -> None:
    what = (f"trade bots, {args.pairs} pairs each, {args.markets} markets"
            if args.command == "trade" else "webserver bots (no exchange)")  # fmt: skip
    print(f"bench/memory: freqtrade {what}, shared markets {args.shared_markets}, "
          f"immortal {args.immortal}, image {IMAGE}")  # fmt: skip
    print(f"{'layout':18}{'bots':>5}{'min':>5}{'docker stats':>14}{'saved':>8}{'+per bot':>10}"
          f"{'PSS':>10}{'saved':>8}{'+per bot':>10}{'USS/bot':>10}")  # fmt: skip
    for layout in (x for x in LAYOUTS if x in args.layouts):
        for minute in args.minutes:
            previous: tuple[int, Figures] | None = None
            for n in args.bots:
                f = results[n][minute][layout]
                base = results[n][minute].get("legacy")
                saved = f"{100 * (1 - f.used / base.used):7.1f}%" if base else "       -"
                saved_pss = f"{100 * (1 - f.pss / base.pss):7.1f}%" if base else "       -"
                added = added_pss = ""
                if previous is not None:
                    dn = n - previous[0]
                    added = f"{(f.used - previous[1].used) / dn / MIB:.0f} MiB"
                    added_pss = f"{(f.pss - previous[1].pss) / dn / MIB:.0f} MiB"
                per_bot = statistics.mean(f.uss) / MIB if f.uss else float("nan")
                print(
                    f"{LABELS[layout]:18}{n:>5}{minute:>5}{f.used / MIB:>10.0f} MiB{saved}"
                    f"{added:>10}{f.pss / MIB:>6.0f} MiB{saved_pss}{added_pss:>10}"
                    f"{per_bot:>6.0f} MiB"
                )
                previous = (n, f)


def counts(text: str) -> list[int]:
    values = sorted({int(n) for n in text.split(",")})
    if not values or values[0] < 1 or values[-1] > 100:
        raise argparse.ArgumentTypeError("between 1 and 100")
    return values


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bots", type=counts, default=[10], help="bot counts, e.g. 1,10,30")
    parser.add_argument("--pairs", type=int, default=20, help="pairs per bot")
    parser.add_argument("--markets", type=int, default=2000, help="markets the exchange lists")
    parser.add_argument("--minutes", type=counts, default=[5, 15], help="when to measure")
    parser.add_argument("--layouts", default=",".join(LAYOUTS))
    parser.add_argument("--command", choices=("trade", "webserver"), default="trade")
    parser.add_argument("--shared-markets", choices=("on", "off"), default="on")
    parser.add_argument("--immortal", choices=("auto", "on", "off"), default="auto")
    args = parser.parse_args()
    args.layouts = [x for x in args.layouts.split(",") if x in LAYOUTS]
    if "shared" not in args.layouts:
        parser.error("the other layouts are built from the shared one: measure it too")
    setup_logging("error")
    started = time.monotonic()
    results: dict[int, dict[int, dict[str, Figures]]] = {}
    with EmulatorProcess.start(markets=args.markets, weight_limit=0) as exchange:
        for n in args.bots:
            with tempfile.TemporaryDirectory(prefix="ftpool-bench-") as tmp:
                results[n] = await Run(Path(tmp), exchange, args, n).run()
        stats = exchange.stats()
    report(args, results)
    print(f"(legacy: one bare container per bot; 'saved' against legacy with as many bots; "
          f"exchange requests: {stats['totals']['requests']}; "
          f"took {time.monotonic() - started:.0f} s)")  # fmt: skip


if __name__ == "__main__":
    asyncio.run(main())
