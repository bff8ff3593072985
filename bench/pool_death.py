"""How soon the controller sees a pool container die, from Docker's event stream.

    .venv/bin/python -m bench.pool_death [--rounds 5]

A real controller (docker runtime, one pool with one `freqtrade webserver` bot) watches
Docker's events. Each round kills the pool container and polls /api/pool/status every
10 ms until the pool shows `suspect` with the runtime's event, then waits for the pool to
be back (Docker's restart policy and the monitor) before the next round. Needs Docker
and `make images`; uses host loopback port 9500.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path

import docker

from common.logging import setup_logging
from tests.support import ControllerHarness, make_settings, wait_for


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    setup_logging("warning")
    client = docker.from_env()
    seen_after: list[float] = []
    with tempfile.TemporaryDirectory(prefix="ftpool-bench-") as tmp:
        settings = make_settings(
            Path(tmp),
            POOL_RUNTIME="docker",
            BOT_COMMAND="freqtrade webserver",
            BOT_LAUNCH="preload",
            POOL_BASE_PORT="9500",
            HEARTBEAT_INTERVAL="1000",
            POOL_GRACE="30000",  # far longer than what is measured: only events can tell
        )
        h = await ControllerHarness(settings).start()
        try:
            await h.provision(instanceId="bench-death")
            await h.wait_running("bench-death", timeout=120)

            killed_at = 0.0

            async def seen() -> bool:
                _, body = await h.call("GET", "/api/pool/status")
                pool = body["pools"][0]
                event = pool["lastRuntimeEvent"]
                # This round's death, reported by Docker (not an earlier round's event).
                return pool["status"] == "suspect" and event and event["at"] >= killed_at

            for _ in range(args.rounds):
                killed_at = time.time()
                killed = time.perf_counter()
                client.containers.get("freqtrade-pool-pool-1").kill()
                await wait_for(seen, 10, step=0.01)
                seen_after.append(time.perf_counter() - killed)
                await h.wait_running("bench-death", timeout=120)
        finally:
            await h.stop()
            client.containers.get("freqtrade-pool-pool-1").remove(force=True)
    ms = sorted(x * 1000 for x in seen_after)
    print(f"bench/pool_death: {args.rounds} kills of a pool container (POOL_GRACE 30 s)")
    print(f"seen as suspect after: median {statistics.median(ms):.0f} ms, max {ms[-1]:.0f} ms")


if __name__ == "__main__":
    asyncio.run(main())
