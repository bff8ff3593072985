"""A swarm node cut off: how soon its work answers from another node, Swarm's way and ftpool's.

    .venv/bin/python -m bench.failover [--cases swarm-5s,ftpool-tuned-5s,...] [--bots 2]

Two dockerds in network namespaces (the multi-node harness, tests/e2e/docker/swarm_nodes.py),
one swarm per dispatcher heartbeat (Docker's default 5 s, and the harness's 1 s); in each,
node 2's link is cut once per case, and mended after it:

- `swarm-<hb>`: a plain service (`python3 -m http.server` in freqtrade-pool:latest, one
  replica, not pinned, restart condition `any`) running on node 2. Times from the cut: node 2
  seen down by the manager, the task's process on node 1, its port answering on node 1.
  Swarm does not fence: node 2's copy runs on through the partition (two copies), and the
  time it takes to stop once the link is back is printed too.
- `ftpool-<fence>-<hb>`: a controller with `POOL_RUNTIME=swarm` (as the partition test,
  tests/e2e/docker/test_swarm_failover.py) and a pool of `--bots` trading bots on node 2;
  `default` is AGENT_FENCE_TIMEOUT/AGENT_FENCE_MARGIN at their defaults (30 s + 60 s),
  `tuned` 10 s + 10 s. Times from the cut: node 2 seen down, its bots stopped by their
  agent's fence, every bot answering on node 1 with every trade it had before the cut; each
  bot's recovery point (its `bot_failed_over` event's ageSeconds and lostSeconds), the most
  copies of one bot seen at once (both nodes sampled every 0.2 s), and the old task's removal
  after the link is back.

Every wait is bounded; the default cases took about 8 minutes here (run in parts). Needs
root, Docker and `make images`; run it under the suite lock. Ports (on the nodes'
addresses): 41700 (market data), 41800 and up (bots), 41900 (the plain service).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import docker
import docker.errors
import docker.types

from common.logging import setup_logging
from tests.e2e.docker.conftest import cluster_behind_gateway, provision_answering
from tests.e2e.docker.swarm_nodes import POOL_IMAGE, SwarmNodes, swarm_nodes, timings
from tests.e2e.docker.test_swarm_failover import ProcessCount, events, set_availability
from tests.e2e.local.test_backups import wait_backed_up
from tests.e2e.local.test_freqtrade import ALICE, all_running
from tests.e2e.trading import trades, wait_trading
from tests.support import wait_for

MARKET_DATA_PORT, BASE_PORT, PLAIN_PORT = 41700, 41800, 41900
PLAIN = "bench-plain"
NETWORK = "ftpool-bench-failover"
FENCES = {"default": None, "tuned": (10, 10)}  # AGENT_FENCE_TIMEOUT, _MARGIN in seconds
HEARTBEATS = {"5s": 5.0, "1s": 1.0}  # the dispatcher's: Docker's default, the harness's
DEFAULT_CASES = "swarm-5s,ftpool-tuned-5s,ftpool-default-5s,swarm-1s,ftpool-tuned-1s"
STEP = 0.2  # seconds between two samples of what is watched


@dataclass(frozen=True)
class Case:
    name: str
    heartbeat: float  # seconds
    fence: tuple[int, int] | None = None  # ftpool's (timeout, margin); None: the defaults
    plain: bool = False  # Swarm's own rescheduling of a plain service

    @staticmethod
    def parse(name: str) -> Case:
        kind, *rest = name.split("-")
        try:
            if kind == "swarm" and len(rest) == 1:
                return Case(name, HEARTBEATS[rest[0]], plain=True)
            if kind == "ftpool" and len(rest) == 2:
                return Case(name, HEARTBEATS[rest[1]], FENCES[rest[0]])
        except KeyError:
            pass
        raise ValueError(f"unknown case {name!r}: swarm-<hb> or ftpool-<default|tuned>-<hb>, "
                         f"hb one of {', '.join(HEARTBEATS)}")  # fmt: skip


def plan(names: list[str]) -> list[tuple[float, list[Case]]]:
    """The cases grouped by heartbeat (one swarm each), in the order first named."""
    groups: dict[float, list[Case]] = {}
    for case in (Case.parse(n) for n in names):
        groups.setdefault(case.heartbeat, []).append(case)
    return list(groups.items())


@dataclass
class Marks:
    """When each watched condition was first seen true, in seconds after `start`."""

    start: float
    first: dict[str, float] = field(default_factory=dict)

    def see(self, name: str, true: bool, now: float) -> None:
        if true and name not in self.first:
            self.first[name] = round(now - self.start, 1)


@dataclass
class Figures:
    case: Case
    marks: dict[str, float]  # what was first seen when, seconds after the cut
    mended: dict[str, float] = field(default_factory=dict)  # ...after the link came back
    points: dict[str, tuple[float, float]] = field(default_factory=dict)  # bot: (age, lost)
    copies: int = 0  # the most copies of one bot (or of the plain service) seen at once

    def line(self) -> str:
        c = self.case
        rule = "no fencing" if c.plain else "fence %s s + %s s" % (c.fence or (30, 60))
        seen = ", ".join(f"{k} {v:.1f} s" for k, v in self.marks.items())
        after = ", ".join(f"{k} {v:.1f} s" for k, v in self.mended.items())
        points = ", ".join(f"{b} age {a} s lost {lost} s" for b, (a, lost) in self.points.items())
        text = f"{c.name} (heartbeat {c.heartbeat:g} s, {rule}): after the cut {seen}"
        text += f"; after the mend {after}" if after else ""
        text += f"; recovery points: {points}" if points else ""
        return f"{text}; most copies at once {self.copies}"


def recovery_points(failed_over: list[dict[str, Any]]) -> dict[str, tuple[float, float]]:
    """Each failed-over bot's (ageSeconds, lostSeconds), from its bot_failed_over event."""
    return {
        e["instanceId"]: (e["detail"]["ageSeconds"], e["detail"]["lostSeconds"])
        for e in sorted(failed_over, key=lambda e: e["instanceId"])
    }


async def watch(marks: Marks, checks: dict[str, Callable[[], bool]], timeout: float) -> None:
    """Sample the checks (blocking calls, off the loop) every STEP until each was true."""
    deadline = time.monotonic() + timeout
    while not set(checks) <= set(marks.first):
        for name, check in checks.items():
            if name not in marks.first:
                marks.see(name, await asyncio.to_thread(check), time.monotonic())
        if time.monotonic() > deadline:
            raise AssertionError(f"not all of {list(checks)} within {timeout} s: {marks.first}")
        await asyncio.sleep(STEP)


def answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=0.5) as response:
            return response.status == 200
    except OSError:
        return False


def node_down(swarm: SwarmNodes, index: int) -> Callable[[], bool]:
    node = swarm.nodes[index]
    return lambda: swarm.manager.client.nodes.get(node.node_id).attrs["Status"]["State"] != "ready"


def remove_services(swarm: SwarmNodes) -> None:
    """Every service gone and its containers ended on every node (bounded)."""
    for service in swarm.manager.client.services.list():
        service.remove()
    deadline = time.monotonic() + 90
    while any(n.client.containers.list(filters={"label": "com.docker.swarm.service.id"})
              for n in swarm.nodes):  # fmt: skip
        if time.monotonic() > deadline:
            raise RuntimeError("the services' containers did not end within 90 s")
        time.sleep(0.5)
    while node_down(swarm, 1)():
        if time.monotonic() > deadline:
            raise RuntimeError("node 2 not ready again within 90 s")
        time.sleep(0.5)


async def plain_service(swarm: SwarmNodes, case: Case) -> Figures:
    node1, node2 = swarm.nodes
    set_availability(swarm, node1, "pause")  # the service's only task goes to node 2
    swarm.manager.client.services.create(
        POOL_IMAGE, ["python3", "-m", "http.server", "8000"], name=PLAIN,
        networks=[NETWORK], healthcheck=docker.types.Healthcheck(test=["NONE"]),
        restart_policy=docker.types.RestartPolicy(condition="any"),
        endpoint_spec=docker.types.EndpointSpec("dnsrr", {PLAIN_PORT: (8000, "tcp", "host")}),
    )  # fmt: skip
    await wait_for(lambda: answers(f"http://{node2.address}:{PLAIN_PORT}/"), 120, step=0.5)
    set_availability(swarm, node1, "active")
    marks = Marks(time.monotonic())
    swarm.cut(node2)
    await watch(marks, {
        "node 2 down": node_down(swarm, 1),
        "started on node 1": lambda: bool(node1.processes("http.server")),
        "answering on node 1": lambda: answers(f"http://{node1.address}:{PLAIN_PORT}/"),
    }, timeout=180)  # fmt: skip
    copies = len(node1.processes("http.server")) + len(node2.processes("http.server"))
    await asyncio.sleep(5)  # the partition goes on: node 2's copy with it
    copies = max(copies, len(node1.processes("http.server")) + len(node2.processes("http.server")))
    mended = Marks(time.monotonic())
    swarm.mend(node2)
    await watch(mended, {"node 2's copy stopped": lambda: not node2.processes("http.server")},
                timeout=180)  # fmt: skip
    return Figures(case, marks.first, mended.first, copies=copies)


@dataclass
class TempDirs:
    """tmp_path_factory's mktemp, for the e2e helpers outside pytest."""

    root: Path
    made: int = 0

    def mktemp(self, name: str) -> Path:
        self.made += 1
        path = self.root / f"{name}{self.made}"
        path.mkdir()
        return path


@dataclass
class Context:
    dirs: TempDirs
    host: docker.DockerClient


async def ftpool_failover(swarm: SwarmNodes, case: Case, bots: int, ctx: Context) -> Figures:
    node1, node2 = swarm.nodes
    names = [f"fo-bench-{i}" for i in range(1, bots + 1)]
    fence = {} if case.fence is None else {
        "AGENT_FENCE_TIMEOUT": str(case.fence[0] * 1000),
        "AGENT_FENCE_MARGIN": str(case.fence[1] * 1000),
    }  # fmt: skip
    set_availability(swarm, node1, "pause")  # the first pool goes to node 2
    async with cluster_behind_gateway(
        ctx.dirs, ctx.host, swarm.host_address,  # type: ignore[arg-type]
        POOL_RUNTIME="swarm", SWARM_NETWORK=NETWORK, POOL_PUBLISH_PORTS="true",
        POOL_BASE_PORT=str(BASE_PORT), MARKET_DATA_BASE_PORT=str(MARKET_DATA_PORT),
        HEALTH_CHECK_INTERVAL="2000", BACKUP_INTERVAL="5000", **fence,
    ) as (cluster, exchange):  # fmt: skip
        h = cluster.harness
        await provision_answering(cluster, exchange.url, names)
        if set(node2.bot_processes()) != set(names):
            raise AssertionError(f"the bots are not on node 2: {node2.bot_processes()}")
        await wait_trading(h, ALICE, names)
        set_availability(swarm, node1, "active")
        with ProcessCount(swarm.nodes) as count:
            before = {bot: await trades(h, ALICE, bot) for bot in names}
            # The cut comes once the controller holds a restore point with every trade read
            # so far (agents send theirs, BACKUP_TRANSPORT=controller): a bot with none at
            # all is failed over stopped, and this measures the failover, not that.
            read_at = datetime.now(UTC)
            for bot in names:
                await wait_backed_up(h, bot, len(before[bot]), read_at)

            async def answering_with_trades() -> bool:
                _, body = await h.call("GET", "/api/bots")
                if any(b["poolId"] == "pool-1" for b in body["bots"]):
                    return False
                await all_running(cluster, names, timeout=240)
                for bot in names:
                    if not set(before[bot]) <= set(await trades(h, ALICE, bot)):
                        raise AssertionError(f"{bot} lost trades made before the cut")
                return True

            marks = Marks(time.monotonic())
            swarm.cut(node2)
            watched = asyncio.create_task(watch(marks, {
                "node 2 down": node_down(swarm, 1),
                "fenced": lambda: not node2.bot_processes(),
            }, timeout=180))  # fmt: skip
            await wait_for(answering_with_trades, 400, step=0.5)
            marks.see("all answering on node 1 with their trades", True, time.monotonic())
            await watched
            points = recovery_points(await events(h, "bot_failed_over"))
            mended = Marks(time.monotonic())
            swarm.mend(node2)
            label = {"label": "ftpool.pool=pool-1"}
            await watch(mended, {"old task removed": lambda: not node2.client.containers.list(
                filters=label)}, timeout=180)  # fmt: skip
    marks.first = dict(sorted(marks.first.items(), key=lambda kv: kv[1]))
    return Figures(case, marks.first, mended.first, points, max(count.most.values()))


@contextlib.contextmanager
def docker_host(url: str) -> Iterator[None]:
    """DOCKER_HOST for the controller in this process: the manager node's daemon."""
    old = os.environ.get("DOCKER_HOST")
    os.environ["DOCKER_HOST"] = url
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("DOCKER_HOST")
        else:
            os.environ["DOCKER_HOST"] = old


async def run_group(
    heartbeat: float, cases: list[Case], bots: int, ctx: Context
) -> list[Figures | str]:
    results: list[Figures | str] = []
    with swarm_nodes(count=2, heartbeat=heartbeat) as swarm:
        setup = ", ".join(f"{k} {v:.1f} s" for k, v in timings.items())
        print(f"swarm with heartbeat {heartbeat:g} s up ({setup})", flush=True)
        swarm.manager.client.networks.create(NETWORK, driver="overlay", attachable=True)
        with docker_host(swarm.manager.docker_host):
            for case in cases:
                started = time.monotonic()
                try:
                    if case.plain:
                        figures: Figures | str = await plain_service(swarm, case)
                    else:
                        figures = await ftpool_failover(swarm, case, bots, ctx)
                except Exception as exc:  # reported; the other cases run on
                    figures = f"{case.name} failed: {type(exc).__name__}: {exc}"
                    swarm.mend(swarm.nodes[1])
                await asyncio.to_thread(remove_services, swarm)
                line = figures if isinstance(figures, str) else figures.line()
                print(f"{line} [{time.monotonic() - started:.0f} s]", flush=True)
                results.append(figures)
    return results


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", default=DEFAULT_CASES, help="comma-separated")
    parser.add_argument("--bots", type=int, default=2, help="trading bots in the cut pool")
    args = parser.parse_args()
    try:
        groups = plan(args.cases.split(","))
    except ValueError as exc:
        parser.error(str(exc))
    setup_logging("warning")
    started, results = time.monotonic(), list[Figures | str]()
    host = docker.from_env(timeout=120)  # the host's daemon, before DOCKER_HOST changes
    with tempfile.TemporaryDirectory(prefix="ftpool-bench-failover-") as tmp:
        ctx = Context(TempDirs(Path(tmp)), host)
        for heartbeat, cases in groups:
            results += await run_group(heartbeat, cases, args.bots, ctx)
    print(f"\nbench/failover: node 2 of 2 cut, {args.bots} trading bots, "
          f"{time.monotonic() - started:.0f} s in all")  # fmt: skip
    for figures in results:
        print(figures if isinstance(figures, str) else figures.line())
    if any(isinstance(figures, str) for figures in results):
        raise SystemExit(1)


if __name__ == "__main__":
    asyncio.run(main())
