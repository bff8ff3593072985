"""Provisioning and deleting bots at fleet scale: the controller's own cost, nothing started.

    .venv/bin/python -m bench.allocate [--bots 10000] [--max-bots 10]

The real controller app (store, allocation, API, auth) runs in its own process on core 0
over the recording runtime of the unit tests, which creates nothing; a client on core 1
provisions `--bots` bots one request at a time through POST /api/bots (so 1,000 pools of
10), then deletes them all through DELETE /api/bots/{id}. Reports allocations per second,
p50/p99 latency of the first and the last 1,000 (allocation cost must stay flat as the
fleet grows), the controller's RSS, and the delete rate. With no agent to confirm them,
deletions are answered 202 (desired state written) and their slots stay taken.
Pool port numbers are only stored: nothing listens on them.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import tempfile
import time
from multiprocessing.connection import Connection
from pathlib import Path

import aiohttp
from aiohttp import web

from bench.tools import LOAD_CPU, MEASURED_CPU, PORTS, cpu_seconds, percentile, pin, rss_bytes
from common.logging import setup_logging
from controller.app import build, create_app
from tests.support import ADMIN_TOKEN, make_settings
from tests.unit.controller.apps import FakeRuntime

PORT = PORTS.start + 300


def serve(max_bots: int, conn: Connection) -> None:
    pin(MEASURED_CPU)
    setup_logging("error")
    asyncio.run(_serve(max_bots, conn))


async def _serve(max_bots: int, conn: Connection) -> None:
    with tempfile.TemporaryDirectory(prefix="ftpool-bench-") as tmp:
        settings = make_settings(
            Path(tmp), CONTROLLER_PORT=str(PORT), MAX_BOTS_PER_CONTAINER=str(max_bots),
            POOL_BASE_PORT="1024",
        )  # fmt: skip
        runner = web.AppRunner(create_app(build(settings, runtime=FakeRuntime())), access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", PORT).start()
        conn.send("ready")
        await asyncio.to_thread(conn.recv)
        await runner.cleanup()


async def timed(http: aiohttp.ClientSession, method: str, path: str, **kw: object) -> float:
    started = time.perf_counter()
    async with http.request(method, f"http://127.0.0.1:{PORT}{path}", **kw) as r:  # type: ignore[arg-type]
        await r.read()
        if r.status not in (200, 201, 202):
            raise SystemExit(f"{method} {path}: {r.status} {await r.text()}")
    return time.perf_counter() - started


async def drive(bots: int, pid: int) -> None:
    headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    async with aiohttp.ClientSession(headers=headers) as http:
        rss_before = rss_bytes(pid)
        cpu_before, started = cpu_seconds(pid), time.perf_counter()
        made = [await timed(http, "POST", "/api/bots", json={"instanceId": f"alloc-{i}"})
                for i in range(bots)]  # fmt: skip
        elapsed, cpu = time.perf_counter() - started, cpu_seconds(pid) - cpu_before
        rss = rss_bytes(pid)
        async with http.get(f"http://127.0.0.1:{PORT}/healthz") as r:
            pools = (await r.json())["pools"]
        started = time.perf_counter()
        gone = [await timed(http, "DELETE", f"/api/bots/alloc-{i}") for i in range(bots)]
        deleted = time.perf_counter() - started
    ms = [x * 1000 for x in made]
    window = min(1000, bots)
    first, last = ms[:window], ms[-window:]
    print(f"bench/allocate: {bots} bots into {pools} pools, one request at a time, "
          f"controller on core {MEASURED_CPU}, client on core {LOAD_CPU}")  # fmt: skip
    print(
        f"provision: {bots / elapsed:.0f}/s, p50 {percentile(ms, 50):.2f} ms, "
        f"p99 {percentile(ms, 99):.2f} ms; controller CPU {cpu / bots * 1e3:.2f} ms per bot"
    )
    print(
        f"first {window}: p50 {percentile(first, 50):.2f} ms, p99 {percentile(first, 99):.2f} ms;"
        f" last {window}: p50 {percentile(last, 50):.2f} ms, p99 {percentile(last, 99):.2f} ms"
    )
    print(
        f"controller RSS: {rss_before / 2**20:.0f} MiB before, {rss / 2**20:.0f} MiB "
        f"with {bots} bots ({(rss - rss_before) / bots / 1024:.1f} KiB per bot)"
    )
    gone_ms = [x * 1000 for x in gone]
    print(
        f"delete (desired state written, 202): {bots / deleted:.0f}/s, "
        f"p99 {percentile(gone_ms, 99):.2f} ms"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bots", type=int, default=10000)
    parser.add_argument("--max-bots", type=int, default=10, help="MAX_BOTS_PER_CONTAINER")
    args = parser.parse_args()
    pin(LOAD_CPU)
    ctx = mp.get_context("spawn")
    ours, theirs = ctx.Pipe()
    controller = ctx.Process(target=serve, args=(args.max_bots, theirs), daemon=True)
    controller.start()
    if not ours.poll(60):
        raise SystemExit("the controller did not start")
    ours.recv()
    try:
        asyncio.run(drive(args.bots, controller.pid))
    finally:
        ours.send("stop")
        controller.join(30)


if __name__ == "__main__":
    main()
