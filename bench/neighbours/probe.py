"""The calm bots' API latency through the controller's proxy, as their users see it.

A process on the load core sends requests to `/api/bots/{id}/{endpoint}` (FreqTrade's
`/api/v1/ping` and `/api/v1/status` behind the proxy) for every calm bot in turn, on a fixed
schedule. Latency counts from when a request was due, so a stalled proxy or bot shows in
the figures instead of merely delaying the next request (no coordinated omission);
requests due while others are outstanding go out concurrently (bench/prober.py's schedule).
"""

from __future__ import annotations

import asyncio
import time
from array import array
from dataclasses import dataclass
from multiprocessing.connection import Connection

import aiohttp

from bench.prober import answered, on_schedule
from bench.tools import LOAD_CPU, pin

ENDPOINTS = ("ping", "status")


@dataclass(frozen=True)
class ProbePlan:
    controller_url: str
    bots: tuple[str, ...]
    token: str
    rate: float  # requests per second, over all bots and endpoints
    timeout: float = 10.0

    def target(self, n: int) -> tuple[int, int]:
        """The n-th request's (bot, endpoint) indices: every pair in turn."""
        return n // len(ENDPOINTS) % len(self.bots), n % len(ENDPOINTS)


@dataclass(frozen=True)
class Sample:
    due: float  # wall-clock time the request was due
    bot: str
    endpoint: str
    seconds: float | None  # None: it failed (an error status, a refused or timed-out request)


def probe(plan: ProbePlan, conn: Connection) -> None:
    """The prober's process: says "ready", runs from the (start, stop) it is sent."""
    pin(LOAD_CPU)
    asyncio.run(_probe(plan, conn))


async def _probe(plan: ProbePlan, conn: Connection) -> None:
    due_at, which, took = array("d"), array("i"), array("d")
    headers = {"Authorization": f"Bearer {plan.token}"}
    timeout = aiohttp.ClientTimeout(total=plan.timeout)
    async with aiohttp.ClientSession(timeout=timeout) as http:

        async def one(n: int, due: float) -> None:
            bot, endpoint = plan.target(n)
            url = f"{plan.controller_url}/api/bots/{plan.bots[bot]}/{ENDPOINTS[endpoint]}"
            ok = await answered(http, url, headers)
            due_at.append(due)
            which.append(n)
            took.append(time.time() - due if ok else -1.0)

        conn.send("ready")
        start_at, stop_at = await asyncio.to_thread(conn.recv)
        await on_schedule(start_at, stop_at, plan.rate, plan.timeout, one)
    conn.send((due_at.tobytes(), which.tobytes(), took.tobytes()))


def decode(plan: ProbePlan, raw: tuple[bytes, bytes, bytes]) -> list[Sample]:
    due_at, which, took = array("d"), array("i"), array("d")
    due_at.frombytes(raw[0])
    which.frombytes(raw[1])
    took.frombytes(raw[2])
    samples = []
    for due, n, seconds in zip(due_at, which, took, strict=True):
        bot, endpoint = plan.target(n)
        samples.append(Sample(due, plan.bots[bot], ENDPOINTS[endpoint],
                              seconds if seconds >= 0 else None))  # fmt: skip
    return samples
