"""Local probes: /proc memory and CPU of a pid, and a bot's ping on loopback."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from agent.probes import (
    CpuMeter,
    cgroup_memory_limit,
    cpu_seconds,
    listening_uids,
    ping,
    rss_bytes,
    uss_bytes,
    wanted_seconds,
)


def test_rss_of_this_process() -> None:
    rss = rss_bytes(os.getpid())
    assert 1 << 20 < rss < 1 << 40
    block = bytearray(64 << 20)  # touch 64 MiB so the resident set grows
    for i in range(0, len(block), 4096):
        block[i] = 1
    assert rss_bytes(os.getpid()) > rss + (32 << 20)
    del block


def dead_pid() -> int:
    pid = 2**22 + 12345
    while os.path.exists(f"/proc/{pid}"):
        pid += 1
    return pid


def test_uss_counts_a_forked_childs_own_pages_not_those_it_shares() -> None:
    """A bot forked from the preloader shares the preloader's pages: its RSS counts them,
    its USS only what it wrote itself."""
    shared = bytearray(os.urandom(1 << 20) * 64)  # 64 MiB in the parent, before the fork
    read_end, write_end = os.pipe()
    go_read, go_write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report, write 32 MiB of its own, report again
        os.close(read_end)
        os.write(write_end, b"1")
        os.read(go_read, 1)
        own = bytearray(32 << 20)
        for i in range(0, len(own), 4096):
            own[i] = 1
        os.write(write_end, b"2")
        os.read(go_read, 1)
        os._exit(0 if shared else 1)
    try:
        os.close(write_end)
        assert os.read(read_end, 1) == b"1"
        rss, uss = rss_bytes(pid), uss_bytes(pid)
        assert uss is not None and rss >= 64 << 20 and uss < 16 << 20
        os.write(go_write, b"x")
        assert os.read(read_end, 1) == b"2"
        grown = uss_bytes(pid)
        assert grown is not None and grown - uss >= 32 << 20
        os.write(go_write, b"x")
    finally:
        os.waitpid(pid, 0)
    assert uss_bytes(pid) is None


def test_rss_and_cpu_of_a_missing_process() -> None:
    assert rss_bytes(dead_pid()) == 0
    assert cpu_seconds(dead_pid()) is None


def test_cpu_meter_measures_busy_time() -> None:
    meter = CpuMeter()
    pid = os.getpid()
    assert meter.sample(pid) == 0.0  # the first sample has nothing to compare with
    start_cpu = cpu_seconds(pid)
    assert start_cpu is not None
    started = time.monotonic()
    # Spin until this process used 0.2 s of CPU (bounded, in case the machine is busy).
    while cpu_seconds(pid) - start_cpu < 0.2 and time.monotonic() - started < 10:  # type: ignore[operator]
        sum(range(10_000))
    percent = meter.sample(pid)
    elapsed = time.monotonic() - started
    assert percent > 0.0
    assert percent <= 100.0 * (os.cpu_count() or 1) + 5
    assert percent == pytest.approx(100 * 0.2 / elapsed, rel=0.9)
    meter.forget_except(set())
    assert meter.sample(pid) == 0.0


def test_cpu_meter_of_a_missing_process() -> None:
    meter = CpuMeter()
    assert meter.sample(dead_pid()) == 0.0
    assert meter.sample(dead_pid()) == 0.0


def test_cgroup_memory_limit_is_a_number() -> None:
    assert cgroup_memory_limit() >= 0


Factory = Callable[..., Any]


async def serve(aiohttp_server: Factory, handler: Callable[..., Any]) -> int:
    app = web.Application()
    app.router.add_get("/api/v1/ping", handler)
    server = await aiohttp_server(app, host="127.0.0.1")
    return server.port


async def test_ping_pong(aiohttp_server: Factory) -> None:
    async def pong(_request: web.Request) -> web.Response:
        return web.json_response({"status": "pong"})

    port = await serve(aiohttp_server, pong)
    async with aiohttp.ClientSession() as session:
        result = await ping(session, port, 2.0)
    assert result.ok is True
    assert 0 <= result.ms < 2000


@pytest.mark.parametrize(
    "response",
    [
        lambda: web.json_response({"error": "boom"}, status=500),
        lambda: web.json_response({"status": "pong"}, status=500),
        lambda: web.json_response({"status": "starting"}),
        lambda: web.Response(text="not json", content_type="application/json"),
        lambda: web.Response(text="pong"),
    ],
    ids=["500", "500-pong", "not-pong", "bad-json", "text"],
)
async def test_ping_fails_on_a_bad_answer(aiohttp_server: Factory, response: Any) -> None:
    async def handler(_request: web.Request) -> web.Response:
        return response()

    port = await serve(aiohttp_server, handler)
    async with aiohttp.ClientSession() as session:
        result = await ping(session, port, 2.0)
    assert result.ok is False


async def test_ping_fails_on_a_closed_port() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    async with aiohttp.ClientSession() as session:
        result = await ping(session, port, 2.0)
    assert result.ok is False
    assert result.ms < 2000


async def test_ping_times_out(aiohttp_server: Factory) -> None:
    import asyncio

    async def slow(_request: web.Request) -> web.Response:
        await asyncio.sleep(5)
        return web.json_response({"status": "pong"})

    port = await serve(aiohttp_server, slow)
    async with aiohttp.ClientSession() as session:
        started = time.monotonic()
        result = await ping(session, port, 0.2)
    assert result.ok is False
    assert time.monotonic() - started < 2


def test_listening_uids_sees_our_own_listener() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        assert listening_uids()[port] == {os.getuid()}
    assert port not in listening_uids()


def test_listening_uids_reads_only_listening_sockets(tmp_path: Path) -> None:
    table = tmp_path / "tcp"
    table.write_text(
        "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid\n"
        "   0: 0100007F:2328 00000000:0000 0A 00000000:00000000 00:00000000 00000000 20003\n"
        "   1: 0100007F:2329 0100007F:D431 01 00000000:00000000 00:00000000 00000000 20004\n"
        "garbage\n"
    )
    assert listening_uids((str(table), str(tmp_path / "missing"))) == {9000: {20003}}


SPIN = "import os, sys; os.sched_setaffinity(0, {int(sys.argv[1])})\nwhile True: pass"


def test_wanted_seconds_counts_the_wait_of_a_process_that_shares_its_core() -> None:
    # Two spinners on one core: each runs about half the time and waits the other half.
    # Its CPU time alone would call it half busy; what it ran or waited calls it busy.
    core = min(os.sched_getaffinity(0))
    spinners = [subprocess.Popen([sys.executable, "-c", SPIN, str(core)]) for _ in range(2)]
    try:
        pid = spinners[0].pid
        time.sleep(0.3)  # both pinned and spinning
        wanted, used = wanted_seconds(pid), cpu_seconds(pid)
        assert wanted is not None and used is not None
        time.sleep(1.0)
        wanted_now, used_now = wanted_seconds(pid), cpu_seconds(pid)
        assert wanted_now is not None and used_now is not None
        assert wanted_now - wanted > used_now - used + 0.2  # it waited, as well as ran
    finally:
        for spinner in spinners:
            spinner.kill()
            spinner.wait()
    assert wanted_seconds(spinners[0].pid) is None  # gone


def test_wanted_seconds_sums_every_thread() -> None:
    # A strategy spinning in a thread of its own counts, not only the main thread.
    code = "import threading\nthreading.Thread(target=lambda: [0 for _ in iter(int, 1)]).start()"
    bot = subprocess.Popen([sys.executable, "-c", code])
    try:
        while len(os.listdir(f"/proc/{bot.pid}/task")) < 2:
            time.sleep(0.01)
        time.sleep(0.3)
        main = sum(int(x) for x in Path(f"/proc/{bot.pid}/schedstat").read_text().split()[:2])
        assert (wanted_seconds(bot.pid) or 0) > main / 1e9 + 0.1
    finally:
        bot.kill()
        bot.wait()
