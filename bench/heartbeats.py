"""How many agent heartbeats one controller processes, at what latency and CPU cost.

    .venv/bin/python -m bench.heartbeats [--pools 10000] [--bots 10] [--rates 10000,20000]

The real controller app runs in its own process on core 0, over a runtime that starts
nothing, with `--pools` pools of `--bots` bots each made through its PoolManager. Client
processes on core 1 open one real WebSocket per pool, say hello with the pool's token and
then send msgpack heartbeats (each bot RUNNING, with its memory, CPU and ping changing
from one heartbeat to the next, as a real agent's do), spread evenly over the pools, at
each rate of `--rates` for `--seconds`.

A heartbeat's `seq` is its send time in microseconds, so the controller, wrapped here,
records for each heartbeat how long it took from the client's send to the end of its
processing (queueing in sockets and the event loop included). The controller's CPU time
per step comes from /proc, so heartbeats per core-second is measured directly, whatever
the client side manages to send on the other core.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import multiprocessing as mp
import struct
import tempfile
import time
from array import array
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path

import aiohttp
from aiohttp import web

from bench.prober import ProbePlan, decode, probe
from bench.tools import LOAD_CPU, MEASURED_CPU, PORTS, GcPauses, cpu_seconds, percentile, pin
from common.logging import setup_logging
from common.protocol import BotStatus, Heartbeat, Hello, PoolStats, encode
from controller.app import build, create_app
from controller.loop import EVENT_LOOPS, new_event_loop
from controller.pools.live import hash_token
from controller.pools.manager import PoolManager
from controller.records import BotRecord, BotSecrets, PoolRecord
from controller.runtimes.base import RuntimeState
from tests.support import ADMIN_TOKEN, make_settings
from tests.unit.controller.apps import FakeRuntime

PORT = PORTS.start + 100
# Every bench bot's slot s listens on BOT_PORT + s; the prober serves bot p1-b0 there.
BOT_PORT = PORTS.start + 200
# Each pool rotates through this many heartbeats whose measurements differ.
VARIANTS = 4
# A placeholder seq that msgpack packs as a full uint64 (0xcf + 8 bytes), patched per send.
_SEQ_MARK = 0xFEEDFACECAFEBEEF
# Quiet time after each step, counted in its CPU time: a backlog is worked off before the
# next step, and the CPU it takes is charged to the heartbeats that caused it.
DRAIN = 2.0
# Between the agents' first heartbeats (every bot becomes RUNNING) and the first step.
WARM_UP = 10.0


def token(n: int) -> str:
    return f"bench-pool-token-{n:06d}-0123456789abcdef"


def bot_id(pool: int, slot: int) -> str:
    return f"p{pool}-b{slot}"


# -- the controller's side (core 0) -----------------------------------------------------


class BenchRuntime(FakeRuntime):
    """Every pool runs: the monitor's regular evaluations find nothing to recover."""

    async def inspect(self, pool_id: str) -> RuntimeState:
        return RuntimeState.RUNNING


def add_pools(pools: PoolManager, count: int, bots: int) -> None:
    """Pools and bots as the store would have loaded them (the heartbeat path never writes)."""
    secrets = BotSecrets("user", "password", "jwt-secret", "ws-token")
    for n in range(1, count + 1):
        pools.set_pool(
            PoolRecord(id=f"pool-{n}", num=n, port_start=BOT_PORT, capacity=bots, owner=None,
                       used=bots, generation=1, token_hash=hash_token(token(n)),
                       created_at=time.time())
        )  # fmt: skip
        for s in range(bots):
            pools.set_bot(
                BotRecord(id=bot_id(n, s), user_id="bench", pool_id=f"pool-{n}", slot=s,
                          port=BOT_PORT + s, strategy="SampleStrategy", strategy_source=b"",
                          config={}, secrets=secrets)
            )  # fmt: skip


def serve(pools: int, bots: int, gc_freeze: bool, event_loop: str, conn: Connection) -> None:
    pin(MEASURED_CPU)
    # Agents that go away at the end are warnings; the benchmark's output is its figures.
    setup_logging("error")
    with asyncio.Runner(loop_factory=lambda: new_event_loop(event_loop)) as runner:
        runner.run(_serve(pools, bots, gc_freeze, conn))


async def _serve(count: int, bots: int, gc_freeze: bool, conn: Connection) -> None:
    with tempfile.TemporaryDirectory(prefix="ftpool-bench-") as tmp:
        settings = make_settings(Path(tmp), CONTROLLER_PORT=str(PORT), LOG_LEVEL="warning",
                                 GC_FREEZE=str(gc_freeze).lower(),
                                 # Pools fall silent between steps; none may turn suspect.
                                 POOL_GRACE="600000",
                                 # The monitor evaluates every pool and bot as by default.
                                 HEALTH_CHECK_INTERVAL="30000")  # fmt: skip
        controller = build(settings, runtime=BenchRuntime())
        runner = web.AppRunner(create_app(controller), access_log=None)
        await runner.setup()
        add_pools(controller.pools, count, bots)
        # As a controller does once its store is loaded (unless GC_FREEZE is off).
        controller.heap.settle()
        pauses = GcPauses()
        gc.callbacks.append(pauses)
        sent_at, took = array("q"), array("q")
        handle = controller.pools.heartbeat

        async def timed(pool_id: str, hb: Heartbeat) -> None:
            await handle(pool_id, hb)
            sent_at.append(hb.seq)
            took.append(time.time_ns() // 1000 - hb.seq)

        controller.pools.heartbeat = timed  # type: ignore[method-assign]
        await web.TCPSite(runner, "127.0.0.1", PORT, backlog=4096).start()
        conn.send("ready")
        # The parent's "stop" arrives on a blocking pipe: wait for it off the event loop.
        await asyncio.to_thread(conn.recv)
        gc.callbacks.remove(pauses)
        conn.send(
            (sent_at.tobytes(), took.tobytes(), controller.pools.frames_rejected, pauses.rows())
        )
        await runner.cleanup()


# -- the agents' side (core 1) ----------------------------------------------------------


@dataclass(frozen=True)
class Plan:
    first_pool: int
    pools: int
    bots: int
    rate: list[int]  # this client's heartbeats per second in each step
    seconds: float


def frames(pool: int, bots: int) -> list[tuple[bytes, int]]:
    """VARIANTS heartbeat templates of one pool and where their seq sits."""
    out = []
    for v in range(VARIANTS):
        statuses = [
            BotStatus(bot_id(pool, s), "RUNNING", pid=1000 + s, since=1.7e9, ping_ok=True,
                      ping_ms=1.0 + v / 10, rss=150_000_000 + v * 4096, cpu=0.5 + v,
                      port_ok=True)
            for s in range(bots)
        ]  # fmt: skip
        stats = PoolStats(mem_used=1_500_000_000 + v * 4096, mem_limit=0, cpu=5.0 + v)
        data = encode(Heartbeat(_SEQ_MARK, 1, statuses, stats))
        out.append((data, data.index(struct.pack(">BQ", 0xCF, _SEQ_MARK)) + 1))
    return out


def agents(plan: Plan, conn: Connection) -> None:
    pin(LOAD_CPU)
    conn.send(asyncio.run(_agents(plan, conn)))


async def _agents(plan: Plan, conn: Connection) -> list[int]:
    url = f"ws://127.0.0.1:{PORT}/api/agents/ws"
    numbers = range(plan.first_pool, plan.first_pool + plan.pools)
    templates = [frames(n, plan.bots) for n in numbers]
    sockets: list[aiohttp.ClientWebSocketResponse] = []
    gate = asyncio.Semaphore(100)
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as http:

        async def connect(n: int) -> None:
            async with gate:
                ws = await http.ws_connect(url, autoping=True, max_msg_size=0)
                hello = Hello(f"pool-{n}", token(n), "bench", plan.bots, BOT_PORT)
                await ws.send_bytes(encode(hello))
                await ws.receive()  # the desired state: the hello was accepted
                # The first heartbeat moves every bot to RUNNING (events, store writes):
                # start-up work, done before the steps measure the steady state.
                data, at = templates[n - plan.first_pool][0]
                seq = time.time_ns() // 1000
                await ws.send_bytes(data[:at] + seq.to_bytes(8, "big") + data[at + 8 :])
                sockets.append(ws)

        await asyncio.gather(*(connect(n) for n in numbers))
        # Read what the controller sends (pings), or aiohttp never answers them.
        drains = [asyncio.create_task(_drain(ws)) for ws in sockets]
        # Every client connected all its agents before the first step: the parent says when.
        conn.send("connected")
        start_at = await asyncio.to_thread(conn.recv)
        sent = [
            await _send(
                sockets, templates, rate, start_at + step * (plan.seconds + DRAIN), plan.seconds
            )
            for step, rate in enumerate(plan.rate)
        ]
        for task in drains:
            task.cancel()
        # All at once and bounded: one by one, each close waits for the controller's reply
        # while it handles thousands of agents going away, longer than the parent waits.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(
                asyncio.gather(*(ws.close() for ws in sockets), return_exceptions=True), 30
            )
    return sent


async def _drain(ws: aiohttp.ClientWebSocketResponse) -> None:
    async for _ in ws:
        pass


async def _send(
    sockets: list[aiohttp.ClientWebSocketResponse],
    templates: list[list[tuple[bytes, int]]],
    rate: int,
    begin: float,
    seconds: float,
) -> int:
    """Send `rate` heartbeats per second, round-robin over the pools, for one step."""
    await asyncio.sleep(max(0.0, begin - time.time()))
    sent, turn = 0, 0
    while (now := time.time()) < begin + seconds:
        due = int((now - begin) * rate) - sent
        for _ in range(due):
            i = turn % len(sockets)
            data, at = templates[i][(turn // len(sockets)) % VARIANTS]
            seq = time.time_ns() // 1000
            await sockets[i].send_bytes(data[:at] + seq.to_bytes(8, "big") + data[at + 8 :])
            sent += 1
            turn += 1
        await asyncio.sleep(0.002)
    return sent


# -- the run ----------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pools", type=int, default=10000)
    parser.add_argument("--bots", type=int, default=10, help="bots per pool, in each heartbeat")
    parser.add_argument("--rates", default="5000,10000,15000,20000,25000,30000")
    parser.add_argument("--seconds", type=float, default=5.0, help="length of each step")
    parser.add_argument("--clients", type=int, default=2, help="client processes")
    parser.add_argument("--gc-freeze", choices=["on", "off"], default="on", help="GC_FREEZE")
    parser.add_argument("--event-loop", choices=EVENT_LOOPS, default="asyncio", help="EVENT_LOOP")
    parser.add_argument(
        "--probe-rate", type=float, default=50, help="proxied requests/s to a fake bot in the steps"
    )
    args = parser.parse_args()
    rates = [int(r) for r in args.rates.split(",")]
    ctx = mp.get_context("spawn")
    ours, theirs = ctx.Pipe()
    serving = (args.pools, args.bots, args.gc_freeze == "on", args.event_loop, theirs)
    controller = ctx.Process(target=serve, args=serving, daemon=True)
    controller.start()
    if not ours.poll(120):
        raise SystemExit("the controller did not start")
    ours.recv()
    print(f"controller pid {controller.pid} (for py-spy)", flush=True)
    prober_conn, its = ctx.Pipe()
    probe_plan = ProbePlan(f"http://127.0.0.1:{PORT}", bot_id(1, 0), BOT_PORT, ADMIN_TOKEN,
                           args.probe_rate)  # fmt: skip
    prober = ctx.Process(target=probe, args=(probe_plan, its), daemon=True)
    prober.start()
    if not prober_conn.poll(60):
        raise SystemExit("the prober did not start")
    prober_conn.recv()
    share = -(-args.pools // args.clients)
    clients = []
    for c in range(args.clients):
        first = 1 + c * share
        count = min(share, args.pools - c * share)
        plan = Plan(first, count, args.bots, [r * count // args.pools for r in rates],
                    args.seconds)  # fmt: skip
        mine, its = ctx.Pipe()
        proc = ctx.Process(target=agents, args=(plan, its), daemon=True)
        proc.start()
        clients.append((proc, mine))
    for _, conn in clients:
        if not conn.poll(60 + args.pools / 100):
            raise SystemExit("a client could not connect its agents in time")
        conn.recv()
    start_at = time.time() + WARM_UP
    for _, conn in clients:
        conn.send(start_at)
    # Until the last step ends: then the clients close every agent's socket at once.
    prober_conn.send((start_at, start_at + len(rates) * (args.seconds + DRAIN) - DRAIN))
    print("agents connected; steps start", flush=True)
    steps = []
    cpu_before = None
    time.sleep(max(0.0, start_at - time.time()))
    for _ in rates:
        cpu_before = cpu_seconds(controller.pid) if cpu_before is None else cpu_before
        time.sleep(args.seconds + DRAIN)
        cpu_after = cpu_seconds(controller.pid)
        steps.append(cpu_after - cpu_before)
        cpu_before = cpu_after
    sent = [0] * len(rates)
    for proc, conn in clients:
        if not conn.poll(60):
            raise SystemExit("a client did not finish")
        for i, n in enumerate(conn.recv()):
            sent[i] += n
        proc.join()
    if not prober_conn.poll(60):
        raise SystemExit("the prober did not finish")
    probed = decode(prober_conn.recv())
    prober.join()
    ours.send("stop")
    sent_raw, took_raw, rejected, gc_rows = ours.recv()
    controller.join(10)
    report(args, rates, steps, sent, start_at, sent_raw, took_raw, rejected)
    report_pauses(args, rates, start_at, probed, gc_rows)


def report(
    args: argparse.Namespace, rates: list[int], cpu: list[float], sent: list[int],
    start_at: float, sent_raw: bytes, took_raw: bytes, rejected: int,
) -> None:  # fmt: skip
    sent_at, took = array("q"), array("q")
    sent_at.frombytes(sent_raw)
    took.frombytes(took_raw)
    per_step: list[list[float]] = [[] for _ in rates]
    for at, us in zip(sent_at, took, strict=True):
        step = int((at / 1e6 - start_at) // (args.seconds + DRAIN))
        if 0 <= step < len(rates):
            per_step[step].append(us / 1000)
    print(f"bench/heartbeats: {args.pools} pools x {args.bots} bots, {args.clients} client "
          f"processes on core {LOAD_CPU}, controller on core {MEASURED_CPU}, "
          f"{args.seconds:g} s per step, {args.event_loop} event loop; {rejected} frames "
          "rejected")  # fmt: skip
    print(f"{'offered/s':>10}{'sent/s':>10}{'handled/s':>11}{'p50 ms':>9}{'p99 ms':>9}"
          f"{'ctl CPU':>10}{'us/hb':>8}{'hb per core-s':>15}")  # fmt: skip
    best = None
    for rate, cpu_s, n_sent, lat in zip(rates, cpu, sent, per_step, strict=True):
        handled = len(lat)
        us = cpu_s / handled * 1e6 if handled else float("nan")
        p99 = percentile(lat, 99)
        print(f"{rate:>10}{n_sent / args.seconds:>10.0f}{handled / args.seconds:>11.0f}"
              f"{percentile(lat, 50):>9.1f}{p99:>9.1f}{cpu_s:>8.1f}s"
              f"{us:>8.1f}{1e6 / us if handled else 0:>15.0f}")  # fmt: skip
        if handled and p99 < 50 and handled >= 0.98 * n_sent:
            best = handled / args.seconds
    print(f"sustained with p99 < 50 ms: {best or 0:.0f} heartbeats/s")


def report_pauses(
    args: argparse.Namespace, rates: list[int], start_at: float,
    probed: tuple[list[float], list[float], int],
    gc_rows: list[tuple[float, int, float, float]],
) -> None:  # fmt: skip
    """Proxied requests' latency and the controller's garbage collections, per step."""
    step_of = lambda at: int((at - start_at) // (args.seconds + DRAIN))  # noqa: E731
    due_at, took, failed = probed
    lat: list[list[float]] = [[] for _ in rates]
    for at, seconds in zip(due_at, took, strict=True):
        if 0 <= (step := step_of(at)) < len(rates):
            lat[step].append(seconds * 1000)
    full: list[list[float]] = [[] for _ in rates]
    young: list[list[float]] = [[] for _ in rates]
    cpu: list[float] = [0.0 for _ in rates]
    for at, generation, seconds, gc_cpu in gc_rows:
        if 0 <= (step := step_of(at)) < len(rates):
            (full if generation == 2 else young)[step].append(seconds * 1000)
            cpu[step] += gc_cpu * 1000
    print(f"proxied /api/bots/{{id}}/ping at {args.probe_rate:g}/s (latency from when due); "
          f"{failed} failed; controller garbage collections (ms)")  # fmt: skip
    print(f"{'offered/s':>10}{'p50 ms':>9}{'p99 ms':>9}{'max ms':>9}{'full GCs':>10}"
          f"{'max full':>10}{'young GCs':>11}{'max young':>11}{'GC wall':>9}"
          f"{'GC CPU':>8}")  # fmt: skip
    for rate, ms, f, y, c in zip(rates, lat, full, young, cpu, strict=True):
        print(f"{rate:>10}{percentile(ms, 50):>9.1f}{percentile(ms, 99):>9.1f}"
              f"{max(ms, default=float('nan')):>9.1f}{len(f):>10}{max(f, default=0):>10.1f}"
              f"{len(y):>11}{max(y, default=0):>11.1f}{sum(f) + sum(y):>9.0f}"
              f"{c:>8.0f}")  # fmt: skip


if __name__ == "__main__":
    main()
