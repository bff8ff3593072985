"""The real controller app over a runtime that runs nothing, for API and monitor tests.

Each app is built through controller.app.build and create_app; only the pool runtime is
a recording fake that reports every pool it made RUNNING, so no process is ever started.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from common.protocol import BotStatus, Desired, decode
from controller.app import Controller
from controller.errors import PoolExists, RuntimeFailure
from controller.moves import transfer
from controller.records import Event
from controller.runtimes import PoolLaunch, PoolRuntime, PoolUsage, RuntimeState
from tests.support import ADMIN_TOKEN, user_token, wait_for

ALICE = user_token("alice")
BOB = user_token("bob")


class FakeRuntime(PoolRuntime):
    """Records what the controller asks of it; every pool it made is RUNNING."""

    name = "fake"

    def __init__(self, pools_dir: Path = Path("/nonexistent/pools")) -> None:
        self.pools_dir = pools_dir  # where a move finds bots' directories (none, unless made)
        self.calls: list[tuple[str, str]] = []
        self.launches: dict[str, PoolLaunch] = {}
        self.broken: set[str] = set()  # pools that cannot be created: a lost host, say
        # Pools whose creation fails after the pool exists (its agent never came up, say).
        self.half_made: set[str] = set()
        self.exited: set[str] = set()  # pools whose processes stopped, until restarted
        self.unreachable: set[str] = set()  # pools on a lost node, until abandoned
        # A slow runtime: a call named here (restart, remove) waits until its event is set.
        self.gates: dict[str, asyncio.Event] = {}

    async def create(self, launch: PoolLaunch) -> None:
        self.calls.append(("create", launch.pool_id))
        if launch.pool_id in self.launches:  # as the real runtimes: never taken over
            raise PoolExists(f"{launch.pool_id} exists already; it is left alone")
        if launch.pool_id in self.broken:
            raise RuntimeFailure(f"cannot create {launch.pool_id}")
        self.launches[launch.pool_id] = launch
        if launch.pool_id in self.half_made:
            raise RuntimeFailure(f"{launch.pool_id} was made but its agent never came up")

    async def inspect(self, pool_id: str) -> RuntimeState:
        self.calls.append(("inspect", pool_id))
        if pool_id not in self.launches:
            return RuntimeState.MISSING
        if pool_id in self.unreachable:
            return RuntimeState.UNREACHABLE
        return RuntimeState.EXITED if pool_id in self.exited else RuntimeState.RUNNING

    async def _gate(self, call: str) -> None:
        gate = self.gates.get(call)
        if gate is not None:
            await gate.wait()

    async def restart(self, pool_id: str) -> None:
        self.calls.append(("restart", pool_id))
        await self._gate("restart")
        self.exited.discard(pool_id)

    async def restart_agent(self, pool_id: str) -> None:
        self.calls.append(("restart_agent", pool_id))

    async def discard(self, pool_id: str) -> None:
        self.calls.append(("discard", pool_id))
        self.launches.pop(pool_id, None)

    async def abandon(self, pool_id: str) -> None:
        self.calls.append(("abandon", pool_id))
        self.launches.pop(pool_id, None)
        self.unreachable.discard(pool_id)

    async def remove(self, pool_id: str, *, bots: int = 0, abandoned: bool = False) -> None:
        self.calls.append(("remove", pool_id))
        await self._gate("remove")
        self.launches.pop(pool_id, None)

    async def stats(self, pool_id: str) -> PoolUsage | None:
        return PoolUsage(memory_bytes=1 << 20, memory_limit=0, cpu_percent=0.0)

    async def list(self) -> list[str]:
        return sorted(self.launches)

    def bot_host(self, pool_id: str) -> str:
        return "127.0.0.1"

    @property
    def bot_listen_ip(self) -> str:
        return "127.0.0.1"

    def watch(self, on_event: Callable[[str, str], None]) -> None:
        """Pools of this runtime never die by themselves: no events to report."""
        self.calls.append(("watch", ""))

    async def close(self) -> None:
        self.calls.append(("close", ""))


class FakeClock:
    """The monitor's time, moved on by a test instead of by sleeping."""

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass
class Api:
    client: TestClient
    controller: Controller
    runtime: FakeRuntime
    clock: FakeClock

    async def call(
        self, method: str, path: str, token: str | None = ADMIN_TOKEN, **kw: Any
    ) -> tuple[int, Any, str]:
        headers = dict(kw.pop("headers", {}))
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        async with self.client.request(method, path, headers=headers, **kw) as resp:
            text = await resp.text()
            try:
                body = json.loads(text) if text else None
            except ValueError:
                body = None
            return resp.status, body, text

    async def provision(self, token: str = ADMIN_TOKEN, **body: Any) -> dict[str, Any]:
        status, data = await self.try_provision(token, **body)
        assert status == 201, data
        return data

    async def try_provision(self, token: str, **body: Any) -> tuple[int, Any]:
        """A provisioning request that may be refused: its status and answer."""
        status, data, _ = await self.call("POST", "/api/bots", token, json=body)
        return status, data


class AgentSocket:
    """Stands in for a connected agent's WebSocket: takes desired-state frames."""

    closed = False

    def __init__(self) -> None:
        self.frames: list[bytes] = []

    async def send_bytes(self, data: bytes) -> None:
        self.frames.append(data)

    async def close(self, **_: object) -> None:
        self.closed = True


def connect(api: Api, pool_id: str = "pool-1") -> None:
    """Make the pool look heard from, as a connected agent's heartbeat would."""
    live = api.controller.pools.registry.live[pool_id]
    live.ws = AgentSocket()  # type: ignore[assignment]
    live.last_seen = live.connected_at = time.time()


def report(api: Api, instance_id: str, state: str, since: float = 1.0) -> None:
    """What the bot's agent would report (the proxy only forwards to a RUNNING bot)."""
    bot = api.controller.pools.registry.bots[instance_id]
    api.controller.pools.registry.live[bot.pool_id].bots[instance_id] = BotStatus(
        instance_id, state, pid=4242 if state == "RUNNING" else 0, since=since
    )


def report_running(api: Api, instance_id: str) -> None:
    report(api, instance_id, "RUNNING")


ApiFactory = Callable[..., Any]


class ObedientAgent:
    """A connected agent's socket that applies each desired state the moment it is sent:
    every bot that should run runs and answers, a held or stopped one is not run."""

    closed = False

    def __init__(self, api: Api, pool_id: str) -> None:
        self.api, self.pool_id = api, pool_id

    async def send_bytes(self, data: bytes) -> None:
        desired = decode(data)
        assert isinstance(desired, Desired)
        live = self.api.controller.pools.registry.live[self.pool_id]
        live.acked_gen, live.last_seen = desired.gen, time.time()
        live.bots = {s.id: BotStatus(s.id, "RUNNING", pid=7, since=1.0, ping_ok=True)
                     for s in desired.bots if s.run == "running"}  # fmt: skip

    async def close(self, **_: object) -> None:
        self.closed = True


def obey(api: Api, pool_id: str) -> None:
    """The pool's agent is connected, can hold bots, and applies what it is sent at once."""
    live = api.controller.pools.registry.live[pool_id]
    live.ws = ObedientAgent(api, pool_id)  # type: ignore[assignment]
    live.connected_at = live.last_seen = time.time()
    live.features = frozenset({"held"})


def obey_new_pools(api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every pool made from now on has an obedient agent at once."""
    create = api.runtime.create

    async def create_with_agent(launch: PoolLaunch) -> None:
        await create(launch)
        obey(api, launch.pool_id)

    monkeypatch.setattr(api.runtime, "create", create_with_agent)


def write_bot_dir(api: Api, where: str) -> Path:
    """A bot's directory as its agent would have left it, with a trade database, at
    `where` under BOT_BASE_DIR (pools/<pool>/bots/<bot>, or staged: migrating/<bot>)."""
    bot_dir = api.controller.settings.bot_base_dir / where
    (bot_dir / "user_data").mkdir(parents=True)
    (bot_dir / "user_data" / "tradesv3.sqlite").write_text(f"trades of {bot_dir.name}")
    return bot_dir


def bot_dirs(api: Api, bot_id: str) -> list[str]:
    """Where a bot's directory is (relative to BOT_BASE_DIR), and what its trades say."""
    base = api.controller.settings.bot_base_dir
    found = [*base.glob(f"pools/*/bots/{bot_id}"), *base.glob(f"migrating/{bot_id}")]
    return [f"{d.relative_to(base)}: {(d / 'user_data' / 'tradesv3.sqlite').read_text()}"
            for d in sorted(found)]  # fmt: skip


def record_hand_overs(api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each directory a move hands over is recorded among the runtime's calls, as
    ("hand_over", "<from>><to>") relative to BOT_BASE_DIR, in order with the rest."""
    base, hand_over = api.controller.settings.bot_base_dir, transfer.hand_over

    def recorded(source: Path, target: Path) -> None:
        api.runtime.calls.append(
            ("hand_over", f"{source.relative_to(base)}>{target.relative_to(base)}")
        )
        hand_over(source, target)

    monkeypatch.setattr(transfer, "hand_over", recorded)


async def events_of(api: Api, kind: str, count: int) -> list[Event]:
    """The first `count` stored events of a kind, once there are that many (the bus
    stores them in the background)."""

    async def stored() -> list[Event]:
        found = [e for e in await api.controller.events.recent(1000) if e.type == kind]
        return found[:count] if len(found) >= count else []

    return await wait_for(stored, timeout=5, step=0.02)
