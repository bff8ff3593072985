"""Shared test helpers: settings for a throw-away controller, tokens, bounded waiting.

ControllerHarness runs the real controller application on a real loopback port, so
real agents (spawned by the local runtime under real supervisord) can connect to it.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import signal
import socket
import sqlite3
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import docker
import jwt
from aiohttp import web

from common.settings import ControllerSettings
from controller.app import Controller, build, create_app

ADMIN_TOKEN = "test-admin-token-0123456789abcdef0123456789"
JWT_SECRET = "test-jwt-secret-0123456789abcdef0123456789abcdef"
FAKEBOT = Path(__file__).with_name("fakebot.py")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def user_token(user: str, role: str = "user", **claims: Any) -> str:
    return jwt.encode({"sub": user, "role": role, **claims}, JWT_SECRET, algorithm="HS256")


def make_settings(base_dir: Path, **overrides: str) -> ControllerSettings:
    return ControllerSettings.from_env(settings_env(base_dir, **overrides))


def settings_env(base_dir: Path, **overrides: str) -> dict[str, str]:
    """The environment of a throw-away test controller over base_dir."""
    return {
        "BOT_BASE_DIR": str(base_dir),
        "CONTROLLER_PORT": str(free_port()),
        "POOL_BASE_PORT": "21000",
        "ADMIN_TOKEN": ADMIN_TOKEN,
        "JWT_SECRET": JWT_SECRET,
        "HEARTBEAT_INTERVAL": "500",
        "POOL_GRACE": "5000",
        "HEALTH_CHECK_INTERVAL": "600000",
        "BOT_PING_TIMEOUT": "2000",
        "BOT_COMMAND": f"{sys.executable} {FAKEBOT}",
        # Plain exec keeps each fake bot's own command line; tests of preloading set preload.
        "BOT_LAUNCH": "exec",
        # Fake bots fetch no market data; tests of the pools' market-data proxy turn it on.
        "MARKET_DATA_PROXY": "off",
        "LOG_LEVEL": "warning",
        **overrides,
    }


async def wait_for(predicate: Callable[[], Any], timeout: float = 20, step: float = 0.1) -> Any:
    """Poll an (async or sync) predicate until truthy; fail the test after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        await asyncio.sleep(step)


def kill_pools(base_dir: Path) -> None:
    """Stop every supervisord (and so every bot) a test left under base_dir.

    All are signalled first and then awaited together, so pools stop in parallel.
    """
    pids = []
    for pidfile in base_dir.glob("pools/*/supervisord.pid"):
        try:
            pid = int(pidfile.read_text())
            # A stale pid file may name a recycled pid: signal only our supervisord.
            if b"supervisord" not in Path(f"/proc/{pid}/cmdline").read_bytes():
                continue
            os.kill(pid, signal.SIGTERM)
        except (OSError, ValueError):
            continue
        pids.append(pid)
    deadline = time.monotonic() + 30
    while pids and time.monotonic() < deadline:
        alive = []
        for pid in pids:
            try:
                os.kill(pid, 0)
                alive.append(pid)
            except OSError:
                pass
        pids = alive
        if pids:
            time.sleep(0.05)


@contextlib.asynccontextmanager
async def harnesses(base_dir: Path) -> AsyncIterator[Callable[..., Awaitable[ControllerHarness]]]:
    """A starter of real controllers on base_dir; afterwards they stop and their pools too."""
    started: list[ControllerHarness] = []

    async def start(**overrides: str) -> ControllerHarness:
        harness = await ControllerHarness(make_settings(base_dir, **overrides)).start()
        started.append(harness)
        return harness

    try:
        yield start
    finally:
        for harness in started:
            await harness.stop()
        kill_pools(base_dir)


class ControllerClient:
    """An HTTP client of a test controller on 127.0.0.1, with the calls tests share."""

    settings: ControllerSettings
    base: str
    http: aiohttp.ClientSession | None = None

    def headers(self, token: str = ADMIN_TOKEN) -> dict[str, str]:
        return {"Authorization": f"Bearer {token}"}

    async def call(
        self, method: str, path: str, token: str | None = ADMIN_TOKEN, **kwargs: Any
    ) -> tuple[int, Any]:
        assert self.http is not None
        headers = kwargs.pop("headers", {})
        if token is not None:
            headers.setdefault("Authorization", f"Bearer {token}")
        async with self.http.request(method, self.base + path, headers=headers, **kwargs) as r:
            body = await r.read()
            try:
                return r.status, await r.json(content_type=None) if body else None
            except ValueError:
                return r.status, body

    async def provision(self, token: str = ADMIN_TOKEN, **body: Any) -> dict[str, Any]:
        status, data = await self.call("POST", "/api/bots", token, json=body)
        assert status == 201, data
        return data

    async def provision_running(
        self, *bots: str, token: str = ADMIN_TOKEN
    ) -> dict[str, int | None]:
        """Provision bots (in this order) and wait until each answers; returns their pids."""
        for bot in bots:
            await self.provision(token, instanceId=bot)
        await asyncio.gather(*(self.wait_running(b) for b in bots))
        return await self.pids()

    async def bot(self, instance_id: str, token: str = ADMIN_TOKEN) -> dict[str, Any]:
        status, data = await self.call("GET", f"/api/bots/{instance_id}", token)
        assert status == 200, data
        return data

    async def wait_running(self, instance_id: str, timeout: float = 30) -> dict[str, Any]:
        async def ready() -> dict[str, Any] | None:
            info = await self.bot(instance_id)
            proc = info["process"]
            fresh = info["status"] == "running"  # not a stale report of a silent pool
            return (
                info
                if fresh and proc and proc["state"] == "RUNNING" and proc["ping"]["ok"]
                else None
            )

        return await wait_for(ready, timeout)

    async def wait_applied(self, pool_id: str, timeout: float = 30) -> None:
        """Wait until the pool's agent has applied the current desired generation.

        A bot's reported state can be older than a change just made (stop then start
        can be answered with the stale RUNNING); after this it is not.
        """

        async def applied() -> bool:
            status, data = await self.call("GET", "/api/pool/status")
            assert status == 200, data
            agent = next(p["agent"] for p in data["pools"] if p["id"] == pool_id)
            return agent["connected"] and agent["appliedGeneration"] >= agent["generation"]

        await wait_for(applied, timeout)

    async def bots(self, token: str = ADMIN_TOKEN) -> dict[str, dict[str, Any]]:
        """GET /api/bots as {instanceId: bot view}."""
        status, data = await self.call("GET", "/api/bots", token)
        assert status == 200, data
        return {b["instanceId"]: b for b in data["bots"]}

    async def records(self) -> dict[str, tuple[Any, ...]]:
        """What the controller holds of each bot, without figures that change by the second."""
        return {
            i: (b["userId"], b["poolId"], b["port"], b["desired"], (b["process"] or {}).get("pid"))
            for i, b in (await self.bots()).items()
        }

    async def pids(self) -> dict[str, int | None]:
        """Each bot's process id as its agent last reported it (None: no process)."""
        return {i: (b["process"] or {}).get("pid") for i, b in (await self.bots()).items()}

    def pool_dir(self, pool_id: str) -> Path:
        return self.settings.pools_dir / pool_id

    async def migrate(self, *args: str) -> tuple[int, str]:
        """Run `python -m controller.migrate` against this controller: exit code, output."""
        env = {"PATH": os.environ.get("PATH", ""), "ADMIN_TOKEN": ADMIN_TOKEN,
               "BOT_BASE_DIR": str(self.settings.bot_base_dir)}  # fmt: skip
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "controller.migrate", "--url", self.base, *args, env=env,
            cwd=Path(__file__).parent.parent, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )  # fmt: skip
        out, _ = await asyncio.wait_for(process.communicate(), 600)
        return process.returncode or 0, out.decode()


class ControllerHarness(ControllerClient):
    """The real controller app served on 127.0.0.1, with an HTTP client for the tests."""

    def __init__(self, settings: ControllerSettings) -> None:
        self.settings = settings
        self.controller: Controller = build(settings)
        self.app = create_app(self.controller)
        self.runner = web.AppRunner(self.app, shutdown_timeout=5)
        self.base = f"http://127.0.0.1:{settings.controller_port}"
        self.stopped = False

    async def start(self) -> ControllerHarness:
        await self.runner.setup()
        await web.TCPSite(
            self.runner, self.settings.controller_host, self.settings.controller_port
        ).start()
        self.http = aiohttp.ClientSession()
        return self

    async def stop(self) -> None:
        """Stop serving (pools keep running, as after a controller crash); idempotent."""
        if self.stopped:
            return
        self.stopped = True
        if self.http is not None:
            await self.http.close()
        await self.runner.cleanup()


class ControllerProcess(ControllerClient):
    """`python -m controller` as a child process, for tests that kill it with SIGKILL."""

    def __init__(
        self, env: dict[str, str], module: str = "controller", source: Path | None = None
    ) -> None:
        """`source`: the tree to run the controller of (another version's); default this one."""
        self.env = env
        self.module = module  # run as `python -m <module>`: a test's may wrap the controller
        self.source = source or Path(__file__).parent.parent
        self.settings = ControllerSettings.from_env(env)
        self.base = f"http://127.0.0.1:{self.settings.controller_port}"
        self.process: asyncio.subprocess.Process | None = None

    async def start(self) -> ControllerProcess:
        env = {"PATH": os.environ.get("PATH", ""), **self.env}
        self.process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", self.module, env=env, cwd=self.source
        )
        self.http = self.http or aiohttp.ClientSession()

        async def serving() -> bool:
            try:
                return (await self.call("GET", "/healthz", None))[0] == 200
            except aiohttp.ClientError:
                return False

        await wait_for(serving, 30)
        return self

    async def kill(self) -> None:
        """kill -9: no shutdown of any kind."""
        assert self.process is not None
        self.process.kill()
        await self.process.wait()

    async def close(self) -> None:
        if self.process is not None and self.process.returncode is None:
            await self.kill()
        if self.http is not None:
            await self.http.close()


# -- processes of the local runtime, seen from outside (integration tests) ---------------


def file_digests(root: Path, skip: Callable[[str], bool]) -> dict[str, str]:
    """Every regular file under root (by path relative to it, unless skip says so) and a
    digest of its content: equal before and after means nothing was written."""
    return {
        rel: hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(root.rglob("*"))
        if path.is_file() and not path.is_symlink()
        and not skip(rel := str(path.relative_to(root)))
    }  # fmt: skip


def remove_pool_containers(client: docker.DockerClient, under: str) -> None:
    """Remove ftpool's pool containers whose data lives under `under`: a run's own only."""
    for c in client.containers.list(all=True, filters={"label": "ftpool.pool"}):
        if any(m.get("Source", "").startswith(under) for m in c.attrs.get("Mounts", [])):
            c.remove(force=True)


def write_rows(db_file: Path, rows: list[tuple[int, str]]) -> None:
    """A trade database with known rows (a table of its own: FreqTrade leaves it alone)."""
    with contextlib.closing(sqlite3.connect(db_file)) as db, db:
        db.execute("CREATE TABLE IF NOT EXISTS known_rows (id INTEGER PRIMARY KEY, pair TEXT)")
        db.executemany("INSERT INTO known_rows VALUES (?, ?)", rows)


def read_rows(db_file: Path) -> list[tuple[int, str]]:
    assert db_file.is_file(), f"{db_file} is missing"
    with contextlib.closing(sqlite3.connect(f"file:{db_file}?mode=ro", uri=True)) as db:
        return db.execute("SELECT id, pair FROM known_rows ORDER BY id").fetchall()


def pid_alive(pid: int) -> bool:
    """True while pid is a live process (a zombie counts as dead)."""
    try:
        os.kill(pid, 0)
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except (OSError, ValueError):
        return False
    return stat[stat.rfind(b")") + 2 : stat.rfind(b")") + 3] != b"Z"


def parent_of(pid: int) -> int:
    stat = Path(f"/proc/{pid}/stat").read_bytes()
    return int(stat[stat.rfind(b")") + 2 :].split()[1])


def processes_under(base_dir: Path) -> list[tuple[int, str, Path]]:
    """(pid, command line, cwd) of every live process whose cwd is base_dir or below it."""
    base = base_dir.resolve()
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        pid = int(entry)
        try:
            cwd = Path(os.readlink(f"/proc/{pid}/cwd"))
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except (OSError, ValueError):
            continue
        if (cwd == base or base in cwd.parents) and pid_alive(pid):
            found.append((pid, cmdline.strip(), cwd))
    return found


def bot_processes(bots_dir: Path, command: str) -> dict[str, list[int]]:
    """Bot id → pids of bot processes running `command` in bots_dir/<id>, their own directory.

    A preloaded bot is a fork of the preloader (its command line says `freqtrade bot <id>`),
    and its launcher, which only stands in for it, is not counted. For
    containers pass /pool/bots: the host sees a containerized process's cwd as the
    container's path.
    """
    found: dict[str, list[int]] = {}
    bots_dir = bots_dir.resolve()
    for pid, cmd, cwd in processes_under(bots_dir):
        if is_bot(cmd, command) and cwd.parent == bots_dir:
            found.setdefault(cwd.name, []).append(pid)
    return found


def is_bot(cmd: str, command: str) -> bool:
    """A process running `command`, or a fork of the preloader (which only bots are): it
    shows itself as `freqtrade bot <id>`, or with the preloader's command line while it
    is being forked."""
    forked = cmd.startswith("freqtrade bot ") or "preloader.py" in cmd
    return (command in cmd or forked) and "launcher.py" not in cmd


def fakebot_pids(bot_dir: Path) -> list[int]:
    """Pids of fake bots running in bot_dir (supervisord starts each bot in its own dir)."""
    return [
        pid
        for pid, cmd, cwd in processes_under(bot_dir)
        if is_bot(cmd, "fakebot.py") and cwd == bot_dir.resolve()
    ]


def supervisor_rpc(pool_dir: Path, method: str, *args: Any) -> Any:
    """Call supervisord's XML-RPC `supervisor.<method>` of a local pool (blocking)."""
    import xmlrpc.client

    from supervisor.xmlrpc import SupervisorTransport

    transport = SupervisorTransport(serverurl=f"unix://{pool_dir / 'supervisor.sock'}")
    proxy = xmlrpc.client.ServerProxy("http://127.0.0.1", transport=transport)
    try:
        return getattr(proxy.supervisor, method)(*args)
    finally:
        transport.close()


def supervisor_processes(pool_dir: Path) -> dict[str, dict[str, Any]]:
    """supervisord's own view of a local pool: {program name: process info}."""
    return {p["name"]: p for p in supervisor_rpc(pool_dir, "getAllProcessInfo")}


def pool_token(pool_dir: Path) -> str:
    """A local pool's agent token, as its supervisord.conf hands it to the agent."""
    conf = (pool_dir / "supervisord.conf").read_text()
    return conf.split('POOL_TOKEN="', 1)[1].split('"', 1)[0]


def supervisord_pid(pool_dir: Path) -> int | None:
    try:
        pid = int((pool_dir / "supervisord.pid").read_text())
    except (OSError, ValueError):
        return None
    return pid if pid_alive(pid) else None
