"""The agents' WebSocket: untrusted frames are rejected and counted; agents come and go."""

from __future__ import annotations

import asyncio
import os
import signal

import aiohttp
import msgpack
import pytest
import pytest_asyncio

from common.protocol import (
    BotStatus,
    Desired,
    Heartbeat,
    Hello,
    PoolStats,
    decode,
    encode,
)
from tests.support import (
    ControllerHarness,
    fakebot_pids,
    pid_alive,
    pool_token,
    supervisor_processes,
    supervisor_rpc,
    wait_for,
)

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="module")]

BASE = 22400
BOTS = ("ag-1", "ag-2")


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def h(module_harness_factory) -> ControllerHarness:
    harness = await module_harness_factory(MAX_BOTS_PER_CONTAINER="3", POOL_BASE_PORT=str(BASE))
    await harness.provision_running(*BOTS)
    return harness


def ws_url(h: ControllerHarness) -> str:
    return h.base.replace("http://", "ws://") + "/api/agents/ws"


async def agents(h: ControllerHarness) -> dict:
    status, body = await h.call("GET", "/api/agents")
    assert status == 200, body
    return body


async def rejected(h: ControllerHarness) -> int:
    return (await agents(h))["frames"]["rejected"]


async def agent_state(h: ControllerHarness, pool_id: str = "pool-1") -> dict:
    return next(a for a in (await agents(h))["agents"] if a["poolId"] == pool_id)


async def assert_bots_untouched(h: ControllerHarness, pids: dict[str, int]) -> None:
    """The controller reports the same processes, and each bot runs exactly once."""

    async def same() -> bool:
        bots = await h.bots()
        return all(
            bots[b]["process"] and bots[b]["process"]["pid"] == pid
            and bots[b]["process"]["state"] == "RUNNING"
            for b, pid in pids.items()
        )  # fmt: skip

    await wait_for(same, timeout=30)
    for bot, pid in pids.items():
        assert fakebot_pids(h.pool_dir("pool-1") / "bots" / bot) == [pid]


async def test_bad_first_frames_are_closed_and_counted(h):
    hello = Hello("pool-1", "wrong-token", "0.0.0", 3, BASE)
    first_frames = [
        ("bytes", encode(hello)),  # a real pool, the wrong token
        ("bytes", encode(Hello("pool-99", pool_token(h.pool_dir("pool-1")), "0", 3, BASE))),
        ("bytes", b"\xc1garbage\x00\xff"),  # not msgpack
        ("bytes", msgpack.packb({"t": "hello", "v": 99})),  # unknown protocol version
        ("bytes", msgpack.packb([1, 2, 3])),  # not a map
        ("bytes", encode(Heartbeat(1, 1, [], PoolStats()))),  # not a hello
        ("str", "hello"),  # a text frame
    ]
    for kind, frame in first_frames:
        before = await rejected(h)
        async with h.http.ws_connect(ws_url(h)) as ws:
            await (ws.send_bytes(frame) if kind == "bytes" else ws.send_str(frame))
            msg = await ws.receive(timeout=10)
            assert msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED), msg
            assert ws.close_code == 4401, (frame, ws.close_code)
        assert await rejected(h) > before, frame
    # The real agent was never disturbed.
    state = await agent_state(h)
    assert state["connected"] is True
    status, health = await h.call("GET", "/healthz", None)
    assert status == 200 and health["agentsConnected"] == 1


async def test_malformed_frames_from_a_connected_agent(h):
    pool = h.pool_dir("pool-1")
    pids = await h.pids()
    # Take the real agent out of the way, then speak for pool-1 with its real token.
    await asyncio.to_thread(supervisor_rpc, pool, "stopProcess", "agent", True)
    await wait_for(lambda: _disconnected(h))
    try:
        async with h.http.ws_connect(ws_url(h)) as ws:
            hello = Hello("pool-1", pool_token(pool), "raw-test", 3, BASE)
            await ws.send_bytes(encode(hello))
            # The controller answers a hello with the pool's desired state.
            msg = await ws.receive(timeout=10)
            assert msg.type == aiohttp.WSMsgType.BINARY
            desired = decode(msg.data)
            assert isinstance(desired, Desired)
            assert [b.id for b in desired.bots] == list(BOTS)
            assert [b.port for b in desired.bots] == [BASE, BASE + 1]

            good = Heartbeat(1, desired.gen, [], PoolStats())

            def heartbeat_with(**fields: object) -> bytes:
                return msgpack.packb({**good.to_wire(), "t": "heartbeat", "v": 1, **fields})

            too_many = [BotStatus(f"b{i}", "RUNNING").to_wire() for i in range(1001)]
            bad_frames: list[bytes | str] = [
                b"\x00\x01garbage",
                b"\x91" * 5000 + b"\xc0",  # nested 5000 lists deep
                msgpack.packb({1: 2}),  # non-string keys
                msgpack.packb({"t": "heartbeat", "v": 1, "seq": "one"}),
                msgpack.packb({"t": "heartbeat", "v": 2, **good.to_wire()}),
                msgpack.packb({"t": "nonsense", "v": 1}),
                heartbeat_with(bots=too_many),
                heartbeat_with(bots=[BotStatus("../../etc", "RUNNING").to_wire()]),
                heartbeat_with(bots=[BotStatus("ag-1", "DANCING").to_wire()]),
                heartbeat_with(bots=[{**BotStatus("ag-1", "RUNNING").to_wire(), "pid": -1}]),
                heartbeat_with(bots=[{**BotStatus("ag-1", "RUNNING").to_wire(), "rss": True}]),
                heartbeat_with(pool=None),
                msgpack.packb({"t": "log_response", "v": 1, "id": 1, "data": "x", "error": ""}),
                encode(desired),  # a controller's frame, from an agent
                encode(hello),  # a second hello
                "text frame",
            ]
            before = await agents(h)
            for frame in bad_frames:
                await (ws.send_str(frame) if isinstance(frame, str) else ws.send_bytes(frame))
            # A valid heartbeat still goes through on the same connection afterwards.
            await ws.send_bytes(encode(good))

            async def seen() -> bool:
                return (await agent_state(h))["sequence"] == 1

            await wait_for(seen)
            after = await agents(h)
            assert after["frames"]["rejected"] - before["frames"]["rejected"] == len(bad_frames)
            assert after["frames"]["received"] > before["frames"]["received"]
            state = await agent_state(h)
            assert state["connected"] is True and state["version"] == "raw-test"
            status, health = await h.call("GET", "/healthz", None)
            assert status == 200 and health["status"] == "ok"
            status, pool_status = await h.call("GET", "/api/pool/status")
            assert status == 200 and pool_status["totalBots"] == len(BOTS)
    finally:
        await asyncio.to_thread(supervisor_rpc, pool, "startProcess", "agent", True)
    # The real agent comes back, adopts the bots, and nothing was restarted.
    await wait_for(lambda: _connected_version(h, "0.1.0"), timeout=30)
    await h.wait_applied("pool-1")
    await assert_bots_untouched(h, pids)


async def _disconnected(h: ControllerHarness) -> bool:
    return not (await agent_state(h))["connected"]


async def _connected_version(h: ControllerHarness, version: str) -> bool:
    state = await agent_state(h)
    return state["connected"] and state["version"] == version


async def test_killed_agent_is_restarted_and_bots_keep_running(h):
    pool = h.pool_dir("pool-1")
    await asyncio.gather(*(h.wait_running(b) for b in BOTS))
    pids = await h.pids()
    agent_pid = (await asyncio.to_thread(supervisor_processes, pool))["agent"]["pid"]
    assert agent_pid and pid_alive(agent_pid)
    os.kill(agent_pid, signal.SIGKILL)
    await wait_for(lambda: not pid_alive(agent_pid), timeout=5)

    async def restarted() -> int | None:
        info = (await asyncio.to_thread(supervisor_processes, pool))["agent"]
        ok = info["statename"] == "RUNNING" and info["pid"] not in (0, agent_pid)
        return info["pid"] if ok else None

    new_agent = await wait_for(restarted, timeout=30)
    # The old connection died with the old process; this one is the new agent's.
    await wait_for(lambda: _connected_version(h, "0.1.0"), timeout=30)
    await h.wait_applied("pool-1")
    await assert_bots_untouched(h, pids)
    assert (await asyncio.to_thread(supervisor_processes, pool))["agent"]["pid"] == new_agent
    for bot in BOTS:
        status, cfg = await h.call("GET", f"/api/bots/{bot}/show_config")
        assert status == 200 and cfg["pid"] == pids[bot]
