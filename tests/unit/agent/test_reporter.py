"""The reporter: who holds each bot's port, and when a starting bot is asked and reported."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web

from agent import reporter as reporter_module
from agent.marketdata.holder import ProxyPort
from agent.probes import PingResult
from agent.reporter import (
    STARTING_PING_EVERY,
    STARTING_PING_FOR,
    STARTING_PINGS_PER_SECOND,
    Reporter,
    starting_ping_at,
)
from agent.supervisor import ProcessInfo
from tests.support import free_port


def running(name: str, pid: int) -> ProcessInfo:
    return ProcessInfo(name=name, state="RUNNING", pid=pid, start=1.0, stop=0.0, exit_status=0)


@pytest.fixture
def reporter(monkeypatch: pytest.MonkeyPatch) -> Reporter:
    r = Reporter(supervisor=None, ping_timeout=1.0, uid_for=lambda port: 20000 + port - 9000)  # type: ignore[arg-type]
    r.processes = {"bot-a": running("bot-a", 11), "bot-b": running("bot-b", 12)}
    r.set_ports({"a": 9000, "b": 9001})
    return r


def test_a_port_held_by_another_slot_user_is_reported(
    reporter: Reporter, monkeypatch: pytest.MonkeyPatch
) -> None:
    # a's port is a's own; b's port is held by slot 0's user (a neighbour bound it first).
    monkeypatch.setattr(reporter_module, "listening_uids", lambda: {9000: {20000}, 9001: {20000}})
    reporter._check_ports([("a", 9000), ("b", 9001)])
    by_id = {s.id: s for s in reporter.statuses()}
    assert by_id["a"].port_ok is True
    assert by_id["b"].port_ok is False


def test_nothing_listening_yet_is_unknown_not_bad(
    reporter: Reporter, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(reporter_module, "listening_uids", lambda: {})
    reporter._check_ports([("a", 9000)])
    assert {s.id: s.port_ok for s in reporter.statuses()}["a"] is None


def test_without_slot_users_ports_are_not_judged(tmp_path: Path) -> None:
    r = Reporter(supervisor=None, ping_timeout=1.0)  # type: ignore[arg-type]
    r.processes = {"bot-a": running("bot-a", 11)}
    r._check_ports([("a", 9000)])
    assert r.statuses()[0].port_ok is None


class FakeSupervisor:
    def __init__(self, processes: dict[str, ProcessInfo]) -> None:
        self.processes = processes

    async def all_processes(self) -> dict[str, ProcessInfo]:
        return dict(self.processes)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def process(name: str, pid: int, state: str = "RUNNING") -> ProcessInfo:
    return ProcessInfo(name=name, state=state, pid=pid, start=1.0, stop=0.0, exit_status=0)  # type: ignore[arg-type]


@contextlib.asynccontextmanager
async def answering(port: int) -> AsyncIterator[None]:
    """FreqTrade's /api/v1/ping on `port` while the block runs."""

    async def pong(_request: web.Request) -> web.Response:
        return web.json_response({"status": "pong"})

    app = web.Application()
    app.router.add_get("/api/v1/ping", pong)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield
    finally:
        await runner.cleanup()


def test_a_bot_not_answering_yet_is_asked_often_at_first_then_at_the_slow_pace() -> None:
    seen = 100.0
    assert starting_ping_at(seen, None, 1.0) == seen  # at once
    assert starting_ping_at(seen, seen, 1.0) == seen + STARTING_PING_EVERY
    late = seen + STARTING_PING_FOR + 1
    assert starting_ping_at(seen, late, 1.0) == late + 1.0
    # A whole pool starting at once is asked at most STARTING_PINGS_PER_SECOND times a second.
    many = 10 * STARTING_PINGS_PER_SECOND
    assert starting_ping_at(seen, seen, 1.0, waiting=many) == seen + 10.0


async def test_a_bot_that_comes_up_is_reported_at_once_and_a_new_process_afresh(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(reporter_module, "listening_uids", lambda: {})
    port = free_port()
    clock = Clock()
    # FreqTrade's API answers long before supervisord's startsecs end: STARTING is asked too.
    supervisor = FakeSupervisor({"bot-a": process("bot-a", 11, "STARTING")})
    r = Reporter(supervisor=supervisor, ping_timeout=1.0, clock=clock)  # type: ignore[arg-type]
    r.set_ports({"a": port})
    await r.poll()
    try:
        assert r.next_starting_ping() == clock.now  # a new process: asked at once
        assert await r.ping_starting() is False  # nothing answers yet
        assert r.statuses()[0].ping_ok is False
        assert await r.ping_starting() is False  # asked just now: not due again yet
        assert r.next_starting_ping() == clock.now + STARTING_PING_EVERY
        async with answering(port):
            clock.now += STARTING_PING_EVERY
            assert await r.ping_starting() is True  # it answers: report now
            status = r.statuses()[0]
            assert (status.state, status.ping_ok) == ("STARTING", True)
            assert r.next_starting_ping() is None  # answered bots wait for the heartbeat
            clock.now += 10
            assert await r.ping_starting() is False
            supervisor.processes["bot-a"] = process("bot-a", 11)  # STARTING -> RUNNING
            assert await r.poll() is True
            assert r.statuses()[0].ping_ok is True  # the same process: its answer holds
            assert r.next_starting_ping() is None
            supervisor.processes["bot-a"] = process("bot-a", 12)  # restarted
            assert await r.poll() is True
            assert r.statuses()[0].ping_ok is None  # the old process's answer is gone
            assert await r.ping_starting() is True  # the new one's first answer
    finally:
        await r.close()


async def test_an_answer_for_a_process_replaced_meanwhile_is_not_kept(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(reporter_module, "listening_uids", lambda: {})
    port = free_port()
    supervisor = FakeSupervisor({"bot-a": process("bot-a", 11)})
    r = Reporter(supervisor=supervisor, ping_timeout=1.0)  # type: ignore[arg-type]
    r.set_ports({"a": port})
    await r.poll()

    async def replaced_while_asked(*_args: object) -> PingResult:
        r.processes = {"bot-a": process("bot-a", 12)}
        return PingResult(True, 1.0)

    monkeypatch.setattr(reporter_module, "ping", replaced_while_asked)
    try:
        await r.ping_all()
        assert r.statuses()[0].ping_ok is None
    finally:
        await r.close()


async def serve_stats(path: Path, body: bytes) -> web.AppRunner:
    """What the market-data proxy serves its agent on its unix socket."""

    async def stats(_request: web.Request) -> web.Response:
        return web.Response(body=body, content_type="application/json")

    app = web.Application()
    app.router.add_get("/stats", stats)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.UnixSite(runner, str(path)).start()
    return runner


PROXY_STATS = (
    b'{"cache": {"bytes": 2048, "entries": 3}, "upstreams": [{"exchange": "binance",'
    b' "origin": "https://api.binance.com", "requests": 30, "hits": 20, "coalesced": 5,'
    b' "upstream": 5, "passthrough": 1, "refused": 0, "errors": 0, "weight": 12,'
    b' "used_weight": 40, "backoffs": 0, "backoff_s": 0.0}]}'
)


async def test_the_market_data_proxys_counters_go_into_the_heartbeat(tmp_path: Path) -> None:
    socket = tmp_path / "stats.sock"
    r = Reporter(FakeSupervisor({}), ping_timeout=1.0, market_data_socket=socket)  # type: ignore[arg-type]
    await r.read_market_data()
    assert r.market_data() is None  # the pool runs no proxy (yet)
    r.processes = {"marketdata": running("marketdata", 5)}
    runner = await serve_stats(socket, PROXY_STATS)
    try:
        await r.read_market_data()
    finally:
        await runner.cleanup()
    figures = r.market_data()
    assert figures is not None and figures.state == "RUNNING"
    assert (figures.cache_bytes, figures.cache_entries) == (2048, 3)
    [upstream] = figures.upstreams
    assert (upstream.exchange, upstream.hits, upstream.used_weight) == ("binance", 20, 40)
    # supervisord restarts it: its state, without figures until it answers again.
    r.processes = {"marketdata": ProcessInfo("marketdata", "STARTING", 6, 1.0, 0.0, 0)}
    assert r.market_data().state == "STARTING" and r.market_data().upstreams == []
    await r.close()


@pytest.mark.parametrize(
    "body", [b"not json", b'{"cache": {}}', PROXY_STATS.replace(b"binance", b"Bin ance")]
)
async def test_a_proxy_saying_nonsense_gives_no_figures(tmp_path: Path, body: bytes) -> None:
    socket = tmp_path / "stats.sock"
    r = Reporter(FakeSupervisor({}), ping_timeout=1.0, market_data_socket=socket)  # type: ignore[arg-type]
    r.processes = {"marketdata": running("marketdata", 5)}
    runner = await serve_stats(socket, body)
    try:
        await r.read_market_data()
    finally:
        await runner.cleanup()
    assert r.market_data().upstreams == [] and r.market_data().cache_bytes == 0
    await r.close()


async def test_each_heartbeat_round_looks_who_holds_the_proxys_port(tmp_path: Path) -> None:
    listener = await asyncio.start_server(lambda _r, w: w.close(), "127.0.0.1", 0)
    checked = []
    supervisor = FakeSupervisor({})
    r = Reporter(
        supervisor, ping_timeout=1.0, market_data_socket=tmp_path / "stats.sock",
        proxy_port=ProxyPort(listener.sockets[0].getsockname()[1]),
        on_port_checked=lambda: checked.append(True),
    )  # type: ignore[arg-type]  # fmt: skip
    try:
        # supervisord's proxy is this process, which holds the port; then another one.
        # Its pid is asked at the check: the last poll's (here stale) does not count.
        supervisor.processes = {"marketdata": running("marketdata", os.getpid())}
        r.processes = {"marketdata": running("marketdata", os.getppid())}
        await r.read_market_data()
        assert r.market_data().holder == "proxy" and checked == [True]
        supervisor.processes = {"marketdata": running("marketdata", os.getppid())}
        await r.read_market_data()
        assert r.market_data().holder == "stranger" and checked == [True, True]
    finally:
        listener.close()
        await r.close()


async def test_the_heartbeat_names_the_bots_up_that_started_through_the_proxy(
    tmp_path: Path,
) -> None:
    r = Reporter(FakeSupervisor({}), ping_timeout=1.0, market_data_socket=tmp_path / "s.sock")  # type: ignore[arg-type]
    stopped = ProcessInfo(name="bot-b3", state="STOPPED", pid=0, start=1.0, stop=2.0,
                          exit_status=0)  # fmt: skip
    r.processes = {"marketdata": running("marketdata", 5), "bot-b1": running("bot-b1", 7),
                   "bot-b2": running("bot-b2", 8), "bot-b3": stopped}  # fmt: skip
    r.routed_bots = lambda: {"b2", "b1", "b3", "gone"}
    md = r.market_data()
    assert md is not None and md.routed == ["b1", "b2"]  # b3 is down, `gone` removed
    await r.close()
