"""Latency and throughput of the bot proxy against the bot itself, on loopback.

    .venv/bin/python -m bench.proxy [--requests 3000] [--concurrency 16]

A real controller (local runtime, real supervisord and agent) proxies to a small fake bot
(tests/fakebot.py). The same GET /api/v1/ping is sent straight to the bot and through
`/api/bots/{id}/ping` with a user JWT: the difference is what the controller costs per
request (auth, routing, header filtering, streaming). Both run in one client process,
so absolute numbers include the client; compare the two rows.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path

import aiohttp

from common.logging import setup_logging
from tests.support import ControllerHarness, kill_pools, make_settings, user_token


async def load(
    http: aiohttp.ClientSession, url: str, headers: dict[str, str], total: int, concurrency: int
) -> tuple[list[float], float]:
    latencies: list[float] = []
    remaining = iter(range(total))

    async def worker() -> None:
        for _ in remaining:
            started = time.perf_counter()
            async with http.get(url, headers=headers) as r:
                await r.read()
                assert r.status == 200, r.status
            latencies.append(time.perf_counter() - started)

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return latencies, time.perf_counter() - started


def row(label: str, latencies: list[float], elapsed: float) -> str:
    ms = sorted(x * 1000 for x in latencies)
    p99 = ms[int(len(ms) * 0.99) - 1]
    return (
        f"{label:10}{len(ms) / elapsed:>10.0f} req/s{statistics.median(ms):>9.2f} ms{p99:>9.2f} ms"
    )


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--concurrency", type=int, default=16)
    args = parser.parse_args()
    setup_logging("warning")
    with tempfile.TemporaryDirectory(prefix="ftpool-bench-") as tmp:
        h = await ControllerHarness(make_settings(Path(tmp), POOL_BASE_PORT="9400")).start()
        try:
            token = user_token("bench")
            bot = await h.provision(token, instanceId="bench-proxy")
            await h.wait_running("bench-proxy")
            direct = f"http://127.0.0.1:{bot['port']}/api/v1/ping"
            proxied = f"{h.base}/api/bots/bench-proxy/ping"
            auth = {"Authorization": f"Bearer {token}"}
            async with aiohttp.ClientSession() as http:
                await load(http, proxied, auth, 200, args.concurrency)  # warm up both paths
                await load(http, direct, {}, 200, args.concurrency)
                results = [
                    ("direct", *await load(http, direct, {}, args.requests, args.concurrency)),
                    ("proxied", *await load(http, proxied, auth, args.requests, args.concurrency)),
                ]
        finally:
            await h.stop()
            kill_pools(Path(tmp))
    print(f"bench/proxy: {args.requests} GET /api/v1/ping, {args.concurrency} concurrent")
    print(f"{'':10}{'throughput':>16}{'median':>12}{'p99':>12}")
    for label, latencies, elapsed in results:
        print(row(label, latencies, elapsed))


if __name__ == "__main__":
    asyncio.run(main())
