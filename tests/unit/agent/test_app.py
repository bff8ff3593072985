"""The agent's connection to its controller: supervisord's hiccups are survived, a log
being read holds up no desired state, and contact for fencing is the controller's word."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

from aiohttp import web
from structlog.testing import capture_logs

from agent.app import Agent
from agent.supervisor import ProcessInfo
from common.protocol import Desired, Hello, LogRequest, LogResponse, Message, decode, encode
from common.settings import AgentSettings
from common.states import ProcessState
from tests.unit.agent.fake_supervisord import serving


class FakeController:
    """The controller's agent socket: sends its outbox to each agent that connects, and
    queues every frame an agent sends."""

    def __init__(self, outbox: list[Message]) -> None:
        self.outbox = outbox
        self.connections = 0
        self.frames: asyncio.Queue[Message] = asyncio.Queue()
        self.refuse = False  # close each connection after its hello, as a 4401
        self.ping = False  # ping each agent after its outbox

    async def agents_ws(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        self.connections += 1
        if self.refuse:
            await self.frames.put(decode((await ws.receive()).data))
            await ws.close(code=4401, message=b"unauthorized")
            return ws
        for frame in self.outbox:
            await ws.send_bytes(encode(frame))
        if self.ping:
            await ws.ping(b"are you there")
        async for msg in ws:
            await self.frames.put(decode(msg.data))
        return ws


@contextlib.asynccontextmanager
async def connected(
    aiohttp_server: Callable[..., Awaitable[Any]], tmp_path: Path, outbox: list[Message],
    refuse: bool = False, **env: str,
) -> AsyncIterator[tuple[Agent, FakeController]]:  # fmt: skip
    """An agent whose connect loop runs against a fake controller; its supervisord is away
    until a test serves tmp_path/supervisor.sock."""
    controller = FakeController(outbox)
    controller.refuse = refuse
    app = web.Application()
    app.router.add_get("/api/agents/ws", controller.agents_ws)
    server = await aiohttp_server(app, host="127.0.0.1")
    settings = AgentSettings.from_env({
        "POOL_ID": "pool-1", "POOL_TOKEN": "t" * 64, "POOL_DIR": str(tmp_path),
        "LOG_DIR": str(tmp_path / "logs"), "SUPERVISOR_SOCKET": str(tmp_path / "supervisor.sock"),
        "CONTROLLER_URL": f"ws://127.0.0.1:{server.port}/api/agents/ws",
        "AGENT_MAX_BACKOFF": "50", **env,
    })  # fmt: skip
    agent = Agent(settings)
    connecting = asyncio.create_task(agent._connect_loop())
    try:
        yield agent, controller
    finally:
        connecting.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await connecting
        agent.supervisor.close()
        await agent.reporter.close()


async def test_supervisord_away_while_connecting_is_retried_never_fatal(
    aiohttp_server: Callable[..., Awaitable[Any]], tmp_path: Path
) -> None:
    async with connected(aiohttp_server, tmp_path, []) as (_agent, controller):
        async with asyncio.timeout(10):
            while controller.connections < 3:  # each attempt fails at supervisord
                await asyncio.sleep(0.01)
        with serving(tmp_path / "supervisor.sock"):  # back
            hello = await asyncio.wait_for(controller.frames.get(), 10)
        assert isinstance(hello, Hello) and hello.pool_id == "pool-1"


async def test_a_log_being_read_holds_up_no_desired_state(
    aiohttp_server: Callable[..., Awaitable[Any]], tmp_path: Path
) -> None:
    outbox: list[Message] = [LogRequest(1, "b1", 100), Desired(5, [])]
    async with connected(aiohttp_server, tmp_path, outbox) as (agent, controller):
        read = asyncio.Event()

        async def slow_tail(name: str, max_bytes: int) -> bytes:
            await read.wait()
            return f"log of {name}".encode()

        agent.supervisor.tail_log = slow_tail  # type: ignore[method-assign]
        with serving(tmp_path / "supervisor.sock"):
            assert isinstance(await asyncio.wait_for(controller.frames.get(), 10), Hello)
            async with asyncio.timeout(5):
                while agent.reconciler._latest is None:
                    await asyncio.sleep(0.01)
            assert agent.reconciler._latest.gen == 5
            read.set()
            answer = await asyncio.wait_for(controller.frames.get(), 5)
        assert answer == LogResponse(1, b"log of bot-b1")


async def test_a_refused_hello_is_no_contact(
    aiohttp_server: Callable[..., Awaitable[Any]], tmp_path: Path
) -> None:
    async with connected(aiohttp_server, tmp_path, [], refuse=True,
                         AGENT_FENCE_TIMEOUT="3600000") as (agent, controller):  # fmt: skip
        lost_at = agent.fence.lost_at
        with serving(tmp_path / "supervisor.sock"):
            for _ in range(3):  # hellos sent, each connection closed after it
                assert isinstance(await asyncio.wait_for(controller.frames.get(), 10), Hello)
        # Still cut off since the agent started: the fence's clock was not reset.
        assert agent.fence.lost_at == lost_at is not None


async def test_a_fenced_agent_says_so_and_is_released_by_the_desired_state(
    aiohttp_server: Callable[..., Awaitable[Any]], tmp_path: Path
) -> None:
    async with connected(aiohttp_server, tmp_path, [Desired(7, [])],
                         AGENT_FENCE_TIMEOUT="3600000") as (agent, controller):  # fmt: skip
        assert agent.fence.timeout == 3600
        agent.fence.fenced = True  # as after a fence while the controller was away
        with serving(tmp_path / "supervisor.sock"):
            hello = await asyncio.wait_for(controller.frames.get(), 10)
            assert isinstance(hello, Hello) and hello.fenced and "fence" in hello.features
            assert hello.fence_timeout_ms == 3_600_000  # the controller waits for the longer
            async with asyncio.timeout(5):
                while agent.reconciler._latest is None:
                    await asyncio.sleep(0.01)
        assert agent.reconciler._latest.gen == 7  # to be applied: the bots come back
        assert not agent.fence.fenced and agent.fence.lost_at is None


async def test_a_ping_from_the_controller_is_answered_and_counts_as_contact(
    aiohttp_server: Callable[..., Awaitable[Any]], tmp_path: Path
) -> None:
    async with connected(aiohttp_server, tmp_path, [],
                         AGENT_FENCE_TIMEOUT="3600000") as (agent, controller):  # fmt: skip
        controller.ping = True
        with serving(tmp_path / "supervisor.sock"):
            assert isinstance(await asyncio.wait_for(controller.frames.get(), 10), Hello)
            async with asyncio.timeout(5):  # no frame but the ping came: heard
                while agent.fence.last_heard is None:
                    await asyncio.sleep(0.01)
        assert agent.fence.lost_at is not None  # a ping alone is no desired state: not released


async def test_every_part_is_wired_as_it_is_made(tmp_path: Path) -> None:
    settings = AgentSettings.from_env({
        "POOL_ID": "pool-1", "POOL_TOKEN": "t" * 64, "POOL_DIR": str(tmp_path),
        "LOG_DIR": str(tmp_path / "logs"), "MARKET_DATA_PORT": "8001",
    })  # fmt: skip
    agent = Agent(settings)
    try:
        # One judge of the proxy's port: the reporter checks the port whose verdict the
        # reconciler routes the bots by.
        assert agent.reporter.proxy_port is not None
        assert agent.reporter.proxy_port is agent.reconciler.proxy_port
        assert agent.reconciler.proxy_port.port == 8001
        assert not agent.watch._wake.is_set()
        agent.reconciler._on_change()  # what the reconciler changed is reported at once
        assert agent.watch._wake.is_set()
    finally:
        agent.supervisor.close()
        await agent.reporter.close()


async def test_a_fence_kills_the_bots_itself_when_supervisord_does_not_answer(
    tmp_path: Path,
) -> None:
    settings = AgentSettings.from_env({
        "POOL_ID": "pool-1", "POOL_TOKEN": "t" * 64, "POOL_DIR": str(tmp_path),
        "LOG_DIR": str(tmp_path / "logs"), "SUPERVISOR_SOCKET": str(tmp_path / "gone.sock"),
    })  # fmt: skip
    agent = Agent(settings)
    bot = await asyncio.create_subprocess_exec("sleep", "60")
    try:
        # What supervisord said last, before it went away: b1 runs as this process.
        agent.reporter.processes = {
            "bot-b1": ProcessInfo("bot-b1", ProcessState.RUNNING, bot.pid, 1.0, 0.0, 0)
        }
        with capture_logs() as logs:
            assert await agent._fence_bots() == 1
        # Gone, without supervisord's help.
        assert await asyncio.wait_for(bot.wait(), 10) == -signal.SIGKILL
        [entry] = [e for e in logs if e["event"] == "fence_killed_bots"]
        assert entry["killed"] == [bot.pid]
        assert agent.reconciler._fenced  # and it starts nothing until the controller speaks
    finally:
        with contextlib.suppress(ProcessLookupError):
            bot.kill()
        agent.supervisor.close()
        await agent.reporter.close()
