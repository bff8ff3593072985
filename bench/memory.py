"""Memory of N real FreqTrade bots: pooled in one container vs. legacy, one container each.

    .venv/bin/python -m bench.memory [--bots 1,4,10] [--settle 20]

Three layouts side by side, each grown to 1, then 4, then 10 bots and measured at each
count. Pooled, shared: a real controller (docker runtime) places `freqtrade webserver` bots
in one pool container, forked from the pool's preloader (BOT_LAUNCH=preload, the default).
Pooled, unshared: the same as plain processes (BOT_LAUNCH=exec). Legacy: containers of the
same image run the same command on the same bot directories, one bot each. Each is
measured from Docker's own accounting (`docker stats`: usage minus inactive page cache,
summed over containers) and from the PSS of every process in the containers
(/proc/<pid>/smaps_rollup, shared pages split fairly); "+per bot" is the marginal memory of
each bot added since the previous count. Needs a running Docker daemon and `make images`.
Uses host loopback ports 9300+.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import tempfile
import time
from pathlib import Path

import aiohttp
import docker

from common.logging import setup_logging
from tests.support import ControllerHarness, make_settings, user_token, wait_for

IMAGE = "freqtrade-pool:latest"
BASE_PORT = 9300
MIB = 2**20


def docker_memory(container) -> int:
    """What `docker stats` shows: usage minus the reclaimable inactive file cache."""
    raw = container.client.api.stats(container.id, stream=False, one_shot=True)
    mem = raw["memory_stats"]
    stats = mem.get("stats", {})
    return mem["usage"] - stats.get("inactive_file", stats.get("total_inactive_file", 0))


def pss(container) -> int:
    """Sum of the proportional set size of every process in the container."""
    total = 0
    for row in container.top(ps_args="-eo pid")["Processes"]:
        try:
            rollup = Path(f"/proc/{row[0]}/smaps_rollup").read_text()
        except OSError:
            continue
        total += int(rollup.split("\nPss:")[1].split()[0]) * 1024
    return total


def measure(containers: list) -> tuple[int, int]:
    for c in containers:
        c.reload()
    return sum(docker_memory(c) for c in containers), sum(pss(c) for c in containers)


def parse_steps(text: str) -> list[int]:
    steps = sorted({int(n) for n in text.split(",")})
    if not steps or steps[0] < 1 or steps[-1] > 100:
        raise argparse.ArgumentTypeError("bot counts must be between 1 and 100")
    return steps


async def settle_and_measure(containers: list, settle: float) -> tuple[int, int]:
    await asyncio.sleep(settle)
    return measure(containers)


async def pooled(
    steps: list[int], base: Path, settle: float, launch: str
) -> tuple[dict[int, tuple[int, int]], list[Path]]:
    """One pool, grown bot by bot to each count in steps; measured at each."""
    settings = make_settings(
        base,
        BOT_LAUNCH=launch,
        POOL_RUNTIME="docker",
        POOL_IMAGE=IMAGE,
        BOT_COMMAND="freqtrade webserver",
        MAX_BOTS_PER_CONTAINER=str(steps[-1]),
        POOL_BASE_PORT=str(BASE_PORT),
        HEARTBEAT_INTERVAL="2000",
    )
    harness = await ControllerHarness(settings).start()
    token = user_token("bench")
    bots = [f"bench-{i}" for i in range(steps[-1])]
    figures = {}
    try:
        placed = 0
        for n in steps:
            for bot in bots[placed:n]:
                await harness.provision(token, instanceId=bot)
            for bot in bots[placed:n]:
                await harness.wait_running(bot, timeout=300)
            placed = n
            container = docker.from_env().containers.get("freqtrade-pool-pool-1")
            figures[n] = await settle_and_measure([container], settle)
    finally:
        await harness.stop()
        with contextlib.suppress(docker.errors.NotFound):
            docker.from_env().containers.get("freqtrade-pool-pool-1").remove(force=True)
    return figures, [base / "pools" / "pool-1" / "bots" / b for b in bots]


def run_legacy(client: docker.DockerClient, slot: int, bot_dir: Path):  # type: ignore[no-untyped-def]
    return client.containers.run(
        IMAGE,
        ["webserver", "--config", "config.json"],
        entrypoint="freqtrade",
        name=f"ftpool-bench-legacy-{slot}",
        user=str(20000 + slot),
        environment={"HOME": "/bot"},
        working_dir="/bot",
        volumes={str(bot_dir): {"bind": "/bot", "mode": "rw"}},
        network_mode="host",
        # A legacy container is the bot alone: not the pool's agent health check.
        healthcheck={"test": ["NONE"]},
        detach=True,
    )


async def legacy(
    steps: list[int], bot_dirs: list[Path], settle: float
) -> dict[int, tuple[int, int]]:
    """The same bots, one container each, added up to each count in steps."""
    client = docker.from_env()
    containers: list = []
    figures = {}
    try:
        async with aiohttp.ClientSession() as http:

            async def answers(port: int) -> bool:
                try:
                    async with http.get(f"http://127.0.0.1:{port}/api/v1/ping") as r:
                        return r.status == 200
                except aiohttp.ClientError:
                    return False

            for n in steps:
                for slot in range(len(containers), n):
                    containers.append(run_legacy(client, slot, bot_dirs[slot]))
                for slot in range(n):
                    await wait_for(lambda s=slot: answers(BASE_PORT + s), 300, step=0.5)
                figures[n] = await settle_and_measure(containers, settle)
    finally:
        for c in containers:
            c.remove(force=True)
    return figures


def report(steps: list[int], results: dict[str, dict[int, tuple[int, int]]]) -> None:
    legacy_figures = results["legacy"]
    print(f"bench/memory: real freqtrade webserver bots, image {IMAGE}")
    print(f"{'layout':18}{'bots':>5}{'docker stats':>14}{'saved':>8}{'+per bot':>10}"
          f"{'PSS':>12}{'saved':>8}{'+per bot':>10}")  # fmt: skip
    for label, figures in results.items():
        previous: tuple[int, int, int] | None = None
        for n in steps:
            used, proportional = figures[n]
            base_used, base_pss = legacy_figures[n]
            # The marginal cost of each bot added since the previous count.
            added = added_pss = ""
            if previous is not None:
                added = f"{(used - previous[1]) / (n - previous[0]) / MIB:.0f} MiB"
                added_pss = f"{(proportional - previous[2]) / (n - previous[0]) / MIB:.0f} MiB"
            print(
                f"{label:18}{n:>5}{used / MIB:>10.0f} MiB{100 * (1 - used / base_used):>7.1f}%"
                f"{added:>10}{proportional / MIB:>8.0f} MiB"
                f"{100 * (1 - proportional / base_pss):>7.1f}%{added_pss:>10}"
            )
            previous = (n, used, proportional)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--bots",
        type=parse_steps,
        default=[1, 4, 10],
        help="comma-separated bot counts to measure at (default 1,4,10)",
    )
    parser.add_argument("--settle", type=float, default=20, help="seconds before measuring")
    args = parser.parse_args()
    setup_logging("warning")
    started = time.monotonic()
    results: dict[str, dict[int, tuple[int, int]]] = {}
    with tempfile.TemporaryDirectory(prefix="ftpool-bench-") as tmp:
        for launch, label in (("preload", "pooled, shared"), ("exec", "pooled, unshared")):
            figures, dirs = await pooled(args.bots, Path(tmp) / launch, args.settle, launch)
            results[label] = figures
        results["legacy"] = await legacy(args.bots, dirs, args.settle)
    report(args.bots, results)
    print(f"(legacy: one container per bot; 'saved' against legacy with as many bots; "
          f"took {time.monotonic() - started:.0f} s)")  # fmt: skip


if __name__ == "__main__":
    asyncio.run(main())
