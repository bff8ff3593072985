"""Proxied-request latency while a controller is under load: what a user or FreqUI sees.

A process on the load core serves a fake bot's `/api/v1/ping` on loopback and sends
requests to it through the controller's proxy (`/api/bots/{id}/ping`) at a fixed rate.
Requests are due on a fixed schedule and latency counts from when a request was due, so a
stalled controller (a full garbage collection, say) shows in the figures instead of merely
delaying the next request (no coordinated omission). Requests that are due while one is
outstanding are sent concurrently, each on its own schedule.
"""

from __future__ import annotations

import asyncio
import time
from array import array
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection

import aiohttp
from aiohttp import web

from bench.tools import LOAD_CPU, pin


@dataclass(frozen=True)
class ProbePlan:
    controller_url: str  # e.g. http://127.0.0.1:40100
    bot_id: str
    bot_port: int
    token: str
    rate: float  # requests per second
    timeout: float = 10.0


def probe(plan: ProbePlan, conn: Connection) -> None:
    """The prober's process: says "ready", runs from the start time it is sent to "stop"."""
    pin(LOAD_CPU)
    asyncio.run(_probe(plan, conn))


async def _fake_bot(port: int) -> web.AppRunner:
    async def ping(_request: web.Request) -> web.Response:
        return web.json_response({"status": "pong"})

    app = web.Application()
    app.router.add_get("/api/v1/ping", ping)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner


async def answered(http: aiohttp.ClientSession, url: str, headers: dict[str, str]) -> bool:
    """Whether a GET of `url` was answered 200 (not an error, refused or timed out)."""
    try:
        async with http.get(url, headers=headers) as response:
            await response.read()
            return response.status == 200
    except (aiohttp.ClientError, TimeoutError):
        return False


async def on_schedule(
    start_at: float, stop_at: float, rate: float, timeout: float,
    one: Callable[[int, float], Awaitable[None]],
) -> None:  # fmt: skip
    """Start `one(n, due)` for the n-th request when it is due, `rate` a second from
    `start_at` until `stop_at` (wall-clock), whatever is still outstanding; then wait up to
    `timeout` for those that are."""
    tasks: set[asyncio.Task[None]] = set()
    n = 0
    while (due := start_at + n / rate) < stop_at:
        await asyncio.sleep(max(0.0, due - time.time()))
        task = asyncio.create_task(one(n, due))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
        n += 1
    if tasks:
        await asyncio.wait(tasks, timeout=timeout + 1)


async def _probe(plan: ProbePlan, conn: Connection) -> None:
    bot = await _fake_bot(plan.bot_port)
    due_at, took, failed = array("d"), array("d"), 0
    url = f"{plan.controller_url}/api/bots/{plan.bot_id}/ping"
    headers = {"Authorization": f"Bearer {plan.token}"}
    timeout = aiohttp.ClientTimeout(total=plan.timeout)
    async with aiohttp.ClientSession(timeout=timeout) as http:

        async def one(_n: int, due: float) -> None:
            nonlocal failed
            if await answered(http, url, headers):
                due_at.append(due)
                took.append(time.time() - due)
            else:
                failed += 1

        conn.send("ready")
        start_at, stop_at = await asyncio.to_thread(conn.recv)
        await on_schedule(start_at, stop_at, plan.rate, plan.timeout, one)
    await bot.cleanup()
    conn.send((due_at.tobytes(), took.tobytes(), failed))


def decode(raw: tuple[bytes, bytes, int]) -> tuple[list[float], list[float], int]:
    """The prober's answer as (due times, latencies in seconds, failed requests)."""
    due_at, took = array("d"), array("d")
    due_at.frombytes(raw[0])
    took.frombytes(raw[1])
    return list(due_at), list(took), raw[2]
