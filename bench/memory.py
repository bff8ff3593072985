"""Memory of N real FreqTrade bots: pooled in one container vs. legacy, one container each.

    .venv/bin/python -m bench.memory [--bots 10] [--settle 30]

Pooled: a real controller (docker runtime) places N `freqtrade webserver` bots in one
pool container. Legacy: N containers of the same image run the same command on the same
bot directories, one bot each. Both are measured from Docker's own accounting (`docker
stats`: usage minus inactive page cache, summed over containers) and from the PSS of
every process in the containers (/proc/<pid>/smaps_rollup, shared pages split fairly).
Needs a running Docker daemon and `make images`. Uses host loopback ports 9300+.
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


async def pooled(n: int, base: Path, settle: float) -> tuple[int, int, list[Path]]:
    settings = make_settings(
        base,
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
    with tempfile.TemporaryDirectory(prefix="ftpool-bench-") as tmp:
        started = time.monotonic()
        p_docker, p_pss, dirs = await pooled(args.bots, Path(tmp), args.settle)
        l_docker, l_pss = await legacy(dirs, args.settle)
    n = args.bots
    print(f"bench/memory: {n} real freqtrade webserver bots, image {IMAGE}")
    print(f"{'':24}{'pooled (1 container)':>22}{f'legacy ({n} containers)':>26}{'saving':>10}")
    for label, p, lg in (("docker stats total", p_docker, l_docker), ("PSS total", p_pss, l_pss)):
        print(f"{label:24}{p / MIB:>18.0f} MiB{lg / MIB:>22.0f} MiB{100 * (1 - p / lg):>9.1f}%")
    for label, p, lg in (
        ("docker stats per bot", p_docker, l_docker),
        ("PSS per bot", p_pss, l_pss),
    ):
        print(f"{label:24}{p / n / MIB:>18.0f} MiB{lg / n / MIB:>22.0f} MiB")
    print(f"(took {time.monotonic() - started:.0f} s)")


if __name__ == "__main__":
    asyncio.run(main())
