"""The pool's market-data proxy as the reconciler sets it up: its program while there are
bots, and each bot's config file pointed at it (never the config the controller sent)."""

from __future__ import annotations

import asyncio
import json
import os
import shlex
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from agent import helper_ready
from agent.app import market_data_program
from agent.marketdata.address import target
from agent.marketdata.holder import Holder, ProxyPort, Verdict
from agent.programs import MARKET_DATA, MarketDataProgram, ProgramOptions
from agent.reconcile import Reconciler
from common.protocol import Desired
from common.settings import AgentSettings
from tests.support import wait_for
from tests.unit.agent.test_reconcile import FakeSupervisor, fake, pool_dir, spec

__all__ = ["fake", "pool_dir"]  # test_reconcile's fixtures, used here too

BINANCE = {"exchange": {"name": "binance", "key": "", "secret": ""}, "dry_run": True}


@pytest.fixture
async def proxy_port() -> AsyncIterator[int]:
    """Something listening, as the proxy supervisord starts would: the reconciler waits
    for it before it starts bots."""
    server = await asyncio.start_server(lambda _r, w: w.close(), "127.0.0.1", 0)
    yield server.sockets[0].getsockname()[1]
    server.close()


def reconciler(
    fake: FakeSupervisor, pool_dir: Path, proxy_pid: int | None = None, **market_data: Any
) -> Reconciler:
    """A reconciler whose proxy, as supervisord runs it, is process `proxy_pid` (by default
    this test's, which holds the `proxy_port` fixture's socket)."""
    fake.real_pids[MARKET_DATA] = os.getpid() if proxy_pid is None else proxy_pid
    md = MarketDataProgram(**market_data) if market_data else None
    options = ProgramOptions(log_dir=pool_dir / "logs", market_data=md)
    return Reconciler(fake, pool_dir, options)  # type: ignore[arg-type]


def routed(pool_dir: Path, bot_id: str) -> bool:
    """Whether the bot's config file names the pool's proxy."""
    return b"127.0.0.1" in (pool_dir / "bots" / bot_id / "config.json").read_bytes()


def bot(bot_id: str, port: int, config: dict[str, Any], **over: Any) -> Any:
    files = {"config.json": json.dumps(config).encode(), "user_data/strategies/S.py": b"x\n"}
    return spec(bot_id, port, files=files, **over)


def written_config(pool_dir: Path, bot_id: str) -> dict[str, Any]:
    return json.loads((pool_dir / "bots" / bot_id / "config.json").read_bytes())


async def test_bots_reach_their_exchange_through_the_pools_proxy(fake, pool_dir, proxy_port):
    rec = reconciler(fake, pool_dir, port=proxy_port, quote_ttl_ms=1500, log_level="warning")
    sent = bot("b1", 9000, BINANCE)
    controllers_files = dict(sent.files)
    await rec.apply(Desired(1, [sent, bot("b2", 9001, {"exchange": {"name": "kraken"}})]))

    program = fake.groups[MARKET_DATA]
    assert program.state == "RUNNING" and program.config["autorestart"] == "true"
    argv = shlex.split(program.config["command"])
    assert argv[1:4] == ["-I", "-m", "agent.marketdata"]
    assert argv[argv.index("--port") + 1] == str(proxy_port)
    assert argv[argv.index("--quote-ttl-ms") + 1] == "1500"
    assert argv[argv.index("--stats-socket") + 1] == str(pool_dir / "marketdata" / "stats.sock")
    assert (pool_dir / "marketdata").is_dir()
    assert fake.started[0] == MARKET_DATA  # before any bot

    urls = written_config(pool_dir, "b1")["exchange"]["ccxt_config"]["urls"]["api"]
    prefix = f"http://127.0.0.1:{proxy_port}"
    assert target(urls["public"].removeprefix(prefix)).url == "https://api.binance.com/api/v3"
    assert written_config(pool_dir, "b1")["dry_run"] is True
    # What the controller sent is not changed; a bot of an exchange without a table is not
    # routed at all.
    assert sent.files == controllers_files
    assert written_config(pool_dir, "b2") == {"exchange": {"name": "kraken"}}


async def test_the_proxy_runs_only_while_the_pool_has_bots(fake, pool_dir, proxy_port):
    rec = reconciler(fake, pool_dir, port=proxy_port)
    await rec.apply(Desired(1, [bot("b1", 9000, BINANCE)]))
    assert MARKET_DATA in fake.groups
    await rec.apply(Desired(2, [bot("b1", 9000, BINANCE, run="held")]))
    assert MARKET_DATA not in fake.groups and MARKET_DATA in fake.removed
    await rec.apply(Desired(3, [bot("b1", 9000, BINANCE)]))
    assert fake.groups[MARKET_DATA].state == "RUNNING"


async def test_changed_lifetimes_restart_the_proxy_alone(fake, pool_dir, proxy_port):
    await reconciler(fake, pool_dir, port=proxy_port).apply(Desired(1, [bot("b1", 9000, BINANCE)]))
    fake.started.clear()
    rec = reconciler(fake, pool_dir, port=proxy_port, candle_ttl_ms=9000)
    await rec.apply(Desired(2, [bot("b1", 9000, BINANCE)]))
    assert fake.started == [MARKET_DATA] and fake.stopped == [MARKET_DATA]


async def test_without_the_proxy_configs_are_as_the_controller_sent_them(fake, pool_dir):
    await reconciler(fake, pool_dir).apply(Desired(1, [bot("b1", 9000, BINANCE)]))
    assert MARKET_DATA not in fake.groups
    assert written_config(pool_dir, "b1") == BINANCE


async def test_a_proxy_whose_user_is_missing_is_not_run_and_bots_go_direct(fake, pool_dir):
    rec = reconciler(fake, pool_dir, port=1, user="no-such-user-ftpool")
    await rec.apply(Desired(1, [bot("b1", 9000, BINANCE)]))
    assert MARKET_DATA not in fake.groups
    assert written_config(pool_dir, "b1") == BINANCE
    assert fake.state("b1") == "RUNNING"


def test_the_agents_settings_decide_whether_the_pool_runs_a_proxy() -> None:
    env = {"POOL_ID": "pool-1", "POOL_TOKEN": "t", "MARKET_DATA_PORT": "8001",
           "MARKET_DATA_QUOTE_TTL": "1500", "MARKET_DATA_USER": "nobody"}  # fmt: skip
    md = market_data_program(AgentSettings.from_env(env))
    assert md == MarketDataProgram(
        port=8001, quote_ttl_ms=1500, candle_ttl_ms=5000, cache_bytes=64 << 20, user="nobody"
    )
    assert market_data_program(AgentSettings.from_env({**env, "MARKET_DATA_PROXY": "off"})) is None
    assert market_data_program(AgentSettings.from_env({**env, "MARKET_DATA_PORT": "0"})) is None


async def test_bots_go_direct_while_a_stranger_holds_the_proxys_port(fake, pool_dir, proxy_port):
    # The socket on the port is this test's; the proxy supervisord runs is another process.
    rec = reconciler(fake, pool_dir, proxy_pid=os.getppid(), port=proxy_port)
    await rec.apply(Desired(1, [bot("b1", 9000, BINANCE)]))
    assert rec.proxy_port is not None and rec.proxy_port.verdict.holder == Holder.STRANGER
    assert rec.proxy_port.verdict.strangers == (os.getpid(),)
    assert written_config(pool_dir, "b1") == BINANCE  # to its exchange, as the user wrote
    assert fake.state("b1") == "RUNNING"  # and trading


async def test_bots_go_direct_while_the_proxy_cannot_start_and_back_once_it_does(
    fake, pool_dir, monkeypatch
):
    monkeypatch.setattr(helper_ready, "MARKET_DATA_WAIT", 0.5)
    free = socket.socket()
    free.bind(("127.0.0.1", 0))  # a port of its own, on which nobody listens yet
    rec = reconciler(fake, pool_dir, port=free.getsockname()[1])
    running = asyncio.create_task(rec.run())
    try:
        rec.submit(Desired(1, [bot("b1", 9000, BINANCE)]))
        await wait_for(lambda: rec.applied_gen == 1, 5)
        assert not routed(pool_dir, "b1") and fake.state("b1") == "RUNNING"
        pid = fake.groups["bot-b1"].pid

        free.listen()  # the proxy (this process) holds its port now: a heartbeat round
        assert rec.proxy_port is not None
        rec.proxy_port.check(os.getpid())
        rec.reroute()
        await wait_for(lambda: routed(pool_dir, "b1"), 5)
        # The running bot is not restarted for it: its next start reads the new config.
        assert fake.groups["bot-b1"].pid == pid

        free.close()  # and gone again: the next start of a bot goes direct
        rec.proxy_port.check(0)
        rec.reroute()
        await wait_for(lambda: not routed(pool_dir, "b1"), 5)
        assert written_config(pool_dir, "b1") == BINANCE
    finally:
        running.cancel()
        free.close()


async def test_turned_off_for_the_pool_it_stops_and_its_bots_restart_direct(
    fake, pool_dir, proxy_port
):
    rec = reconciler(fake, pool_dir, port=proxy_port)
    await rec.apply(Desired(1, [bot("b1", 9000, BINANCE), bot("b2", 9001, BINANCE, run="stopped")]))
    assert routed(pool_dir, "b1") and fake.state("b1") == "RUNNING"
    pid = fake.groups["bot-b1"].pid

    # A new agent (the switch is kept across its restarts) is told the proxy is off.
    rec = reconciler(fake, pool_dir, port=proxy_port)
    off = [bot("b1", 9000, BINANCE), bot("b2", 9001, BINANCE, run="stopped")]
    await rec.apply(Desired(2, off, market_data=False))
    assert MARKET_DATA not in fake.groups
    assert written_config(pool_dir, "b1") == BINANCE and written_config(pool_dir, "b2") == BINANCE
    # The running bot restarted, to read its new config; the stopped one stays stopped.
    assert fake.state("b1") == "RUNNING" and fake.groups["bot-b1"].pid != pid
    assert fake.state("b2") == "STOPPED"
    pid = fake.groups["bot-b1"].pid
    await rec.apply(Desired(3, off, market_data=False))  # the same again: nothing restarts
    assert fake.groups["bot-b1"].pid == pid

    await rec.apply(Desired(4, off[:1]))  # on again
    assert fake.groups[MARKET_DATA].state == "RUNNING" and routed(pool_dir, "b1")
    assert fake.groups["bot-b1"].pid != pid


async def test_a_pool_without_a_proxy_restarts_nothing_for_the_switch(fake, pool_dir):
    rec = reconciler(fake, pool_dir)  # no port: the pool runs none
    await rec.apply(Desired(1, [bot("b1", 9000, BINANCE)]))
    pid = fake.groups["bot-b1"].pid
    await rec.apply(Desired(2, [bot("b1", 9000, BINANCE)], market_data=False))
    assert fake.groups["bot-b1"].pid == pid


async def test_a_reroute_while_fenced_starts_nothing(
    fake: FakeSupervisor, pool_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The proxy's port changing hands while the agent is cut off from its controller
    writes no config and starts no bot: only the controller's next word ends a fence."""
    monkeypatch.setattr(helper_ready, "MARKET_DATA_WAIT", 0.5)
    free = socket.socket()
    free.bind(("127.0.0.1", 0))
    rec = reconciler(fake, pool_dir, port=free.getsockname()[1])
    running = asyncio.create_task(rec.run())
    try:
        rec.submit(Desired(1, [bot("b1", 9000, BINANCE)]))
        await wait_for(lambda: rec.applied_gen == 1, 5)
        await rec.fence()
        assert fake.state("b1") == "STOPPED"
        free.listen()
        assert rec.proxy_port is not None
        rec.proxy_port.check(os.getpid())
        rec.reroute()
        await asyncio.sleep(0.2)
        assert fake.state("b1") == "STOPPED" and not routed(pool_dir, "b1")
    finally:
        running.cancel()
        free.close()


async def settle(rec: Reconciler, gen: int) -> None:
    for _ in range(300):
        if rec.applied_gen == gen:
            break
        await asyncio.sleep(0.01)


async def test_a_reroute_during_an_apply_repeats_that_desired_state_never_an_older_one(
    fake: FakeSupervisor, pool_dir: Path
) -> None:
    """A bot held for a move must not start again because a heartbeat round rerouted
    bots while its hold was being applied (the reroute repeated the previous state)."""
    rec = Reconciler(fake, pool_dir, ProgramOptions(log_dir=pool_dir / "logs"))  # type: ignore[arg-type]
    rec.proxy_port = ProxyPort(1)  # a pool with a market-data proxy port; nobody holds port 1
    task = asyncio.create_task(rec.run())
    try:
        rec.submit(Desired(1, [spec("x", 9000), spec("y", 9001)]))
        await settle(rec, 1)
        assert fake.state("x") == "RUNNING"

        # The controller holds x to move it. While the agent applies that (x stopping), a
        # heartbeat round finds the proxy's port verdict changed (the proxy came back, or
        # went away) and calls reroute(), as Reporter.read_market_data does.
        real_stop = fake.stop

        async def stop_and_heartbeat(name: str) -> None:
            await real_stop(name)
            rec.proxy_port.verdict = Verdict(Holder.PROXY)  # what this round's check saw
            rec.reroute()

        fake.stop = stop_and_heartbeat  # type: ignore[method-assign]
        rec.submit(Desired(2, [spec("x", 9000, run="held"), spec("y", 9001)]))
        for _ in range(100):
            await asyncio.sleep(0.01)
        print("applied_gen", rec.applied_gen, "x:", fake.state("x"), "started:", fake.started)
        assert fake.state("x") == "ABSENT", "a held bot was started again by a stale desired state"
        assert rec.applied_gen == 2
    finally:
        task.cancel()


async def test_the_bots_started_through_the_proxy_are_known_until_their_next_start(
    fake, pool_dir, proxy_port
):
    """Which running bots read a config naming the proxy when they started: the controller
    moves those off a port a stranger took (controller/health/rerouting.py)."""
    rec = reconciler(fake, pool_dir, port=proxy_port)
    kraken = bot("b2", 9001, {"exchange": {"name": "kraken"}})  # no table: never routed
    await rec.apply(Desired(1, [bot("b1", 9000, BINANCE), kraken]))
    assert rec.routed_bots == {"b1"}
    # The agent restarts; the bots run on, and it still knows how each started.
    rec = reconciler(fake, pool_dir, port=proxy_port)
    assert rec.routed_bots == {"b1"}

    # A stranger holds the port (the proxy supervisord runs is another process): configs
    # are written direct, but a running bot keeps the config it started with ...
    fake.groups[MARKET_DATA].pid = os.getppid()
    await rec.apply(Desired(2, [bot("b1", 9000, BINANCE), kraken]))
    assert written_config(pool_dir, "b1") == BINANCE and rec.routed_bots == {"b1"}
    # ... until it restarts (the controller's nonce): then it runs direct.
    pid = fake.groups["bot-b1"].pid
    await rec.apply(Desired(3, [bot("b1", 9000, BINANCE, nonce=1), kraken]))
    assert fake.groups["bot-b1"].pid != pid and rec.routed_bots == set()
    assert reconciler(fake, pool_dir, port=proxy_port).routed_bots == set()  # kept so
