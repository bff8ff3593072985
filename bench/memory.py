"""Memory of N real FreqTrade bots: pooled in one container vs. legacy, one container each.

    .venv/bin/python -m bench.memory [--bots 10] [--settle 30]

Pooled: a real controller (docker runtime) places N `freqtrade webserver` bots in one
pool container, twice: forked from the pool's preloader (BOT_LAUNCH=preload, the default)
and as plain processes (BOT_LAUNCH=exec). Legacy: N containers of the same image run the
same command on the same bot directories, one bot each. Each is measured from Docker's
own accounting (`docker stats`: usage minus inactive page cache, summed over containers)
and from the PSS of every process in the containers (/proc/<pid>/smaps_rollup, shared
pages split fairly). Needs a running Docker daemon and `make images`. Uses host loopback
ports 9300+.
"""

from __future__ import annotations

import argparse
import asyncio
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


async def pooled(n: int, base: Path, settle: float, launch: str) -> tuple[int, int, list[Path]]:
    settings = make_settings(
        base,
        BOT_LAUNCH=launch,
        POOL_RUNTIME="docker",
        POOL_IMAGE=IMAGE,
        BOT_COMMAND="freqtrade webserver",
        MAX_BOTS_PER_CONTAINER=str(n),
        POOL_BASE_PORT=str(BASE_PORT),
        HEARTBEAT_INTERVAL="2000",
    )
    harness = await ControllerHarness(settings).start()
    token = user_token("bench")
    try:
        bots = [f"bench-{i}" for i in range(n)]
        for bot in bots:
            await harness.provision(token, instanceId=bot)
        for bot in bots:
            await harness.wait_running(bot, timeout=300)
        await asyncio.sleep(settle)
        container = docker.from_env().containers.get("freqtrade-pool-pool-1")
        used, proportional = measure([container])
    finally:
        await harness.stop()
    container.remove(force=True)
    return used, proportional, [base / "pools" / "pool-1" / "bots" / b for b in bots]


async def legacy(bot_dirs: list[Path], settle: float) -> tuple[int, int]:
    client = docker.from_env()
    containers = []
    try:
        for slot, bot_dir in enumerate(bot_dirs):
            containers.append(
                client.containers.run(
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
            )
        async with aiohttp.ClientSession() as http:

            async def answers(port: int) -> bool:
                try:
                    async with http.get(f"http://127.0.0.1:{port}/api/v1/ping") as r:
                        return r.status == 200
                except aiohttp.ClientError:
                    return False

            for slot in range(len(bot_dirs)):
                await wait_for(lambda s=slot: answers(BASE_PORT + s), 300, step=0.5)
        await asyncio.sleep(settle)
        return measure(containers)
    finally:
        for c in containers:
            c.remove(force=True)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bots", type=int, default=10)
    parser.add_argument("--settle", type=float, default=30, help="seconds before measuring")
    args = parser.parse_args()
    setup_logging("warning")
    started = time.monotonic()
    results: dict[str, tuple[int, int]] = {}
    with tempfile.TemporaryDirectory(prefix="ftpool-bench-") as tmp:
        for launch in ("preload", "exec"):
            used, proportional, dirs = await pooled(
                args.bots, Path(tmp) / launch, args.settle, launch
            )
            results[f"pooled, {launch}"] = (used, proportional)
        results["legacy"] = await legacy(dirs, args.settle)
    n = args.bots
    legacy_docker, legacy_pss = results["legacy"]
    print(f"bench/memory: {n} real freqtrade webserver bots, image {IMAGE}")
    print(f"{'':18}{'docker stats':>14}{'per bot':>10}{'saving':>9}{'PSS':>12}{'per bot':>10}"
          f"{'saving':>9}")  # fmt: skip
    for label, (used, proportional) in results.items():
        print(
            f"{label:18}{used / MIB:>10.0f} MiB{used / n / MIB:>6.0f} MiB"
            f"{100 * (1 - used / legacy_docker):>8.1f}%"
            f"{proportional / MIB:>8.0f} MiB{proportional / n / MIB:>6.0f} MiB"
            f"{100 * (1 - proportional / legacy_pss):>8.1f}%"
        )
    print(f"(legacy: {n} containers, one bot each; took {time.monotonic() - started:.0f} s)")


if __name__ == "__main__":
    asyncio.run(main())
