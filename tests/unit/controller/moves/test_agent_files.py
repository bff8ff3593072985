"""A move's files through the agents (POOL_STORAGE=node): the controller's side and the
agent's, over real HTTP on loopback; only the WebSocket between them is a direct call."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import io
import os
import shutil
import sqlite3
import tarfile
import threading
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from agent.bot_transfer import BotTransfer, files_url
from common.bot_archive import SHA_HEADER
from common.protocol import FilesRequest, FilesResponse
from controller.api.agent_files import APIAgentFiles
from controller.api.middleware import error_middleware
from controller.errors import BotUnavailable
from controller.moves.agent_files import AgentFiles


class Agents:
    """The sessions' request(), answered by each pool's agent-side BotTransfer."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.url = ""
        self.ids = iter(range(1, 1000))
        self.offline: set[str] = set()
        self.released: set[str] = set()  # bots the newest desired state no longer holds
        self.agents: dict[str, BotTransfer] = {}

    def pool_dir(self, pool_id: str) -> Path:
        return self.root / "nodes" / pool_id

    def next_request_id(self) -> int:
        return next(self.ids)

    async def request(self, pool_id: str, frame: FilesRequest, timeout: float) -> FilesResponse:
        if pool_id in self.offline:
            raise BotUnavailable(f"the agent of {pool_id} is not connected")
        return await self.agent(pool_id).handle(frame)

    def agent(self, pool_id: str) -> BotTransfer:
        if pool_id not in self.agents:
            self.pool_dir(pool_id).mkdir(parents=True, exist_ok=True)  # the pool's /pool
            held = lambda bot_id: bot_id not in self.released  # noqa: E731
            self.agents[pool_id] = BotTransfer(self.pool_dir(pool_id), self.url, held)
        return self.agents[pool_id]


@contextlib.asynccontextmanager
async def serving(agents: Agents, staging: Path) -> AsyncIterator[tuple[AgentFiles, TestServer]]:
    """The controller's side of `agents`' transfers, its HTTP routes on loopback."""
    files = AgentFiles(agents, staging)  # type: ignore[arg-type]
    app = web.Application(middlewares=[error_middleware])
    app.add_routes(APIAgentFiles(files).routes())
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    agents.url = f"ws://127.0.0.1:{server.port}/api/agents/ws"
    try:
        yield files, server
    finally:
        await server.close()


@pytest.fixture
async def setup(tmp_path: Path) -> AsyncIterator[tuple[AgentFiles, Agents, TestServer]]:
    agents = Agents(tmp_path)
    async with serving(agents, tmp_path / "migrating") as (files, server):
        yield files, agents, server


def _trading_bot(bot_dir: Path) -> None:
    (bot_dir / "user_data").mkdir(parents=True)
    (bot_dir / "config.json").write_text('{"dry_run": true}')
    db = sqlite3.connect(bot_dir / "tradesv3.dryrun.sqlite")
    db.execute("CREATE TABLE trades (id INTEGER PRIMARY KEY, pair TEXT)")
    db.executemany("INSERT INTO trades (pair) VALUES (?)", [("BTC/USDT",), ("ETH/USDT",)])
    db.commit()
    db.close()


def _trades(bot_dir: Path) -> list[tuple[int, str]]:
    db = sqlite3.connect(bot_dir / "tradesv3.dryrun.sqlite")
    try:
        return db.execute("SELECT id, pair FROM trades ORDER BY id").fetchall()
    finally:
        db.close()


def test_the_files_url_is_beside_the_websocket() -> None:
    assert files_url("ws://10.0.0.1:5000/api/agents/ws", "ab") == (
        "http://10.0.0.1:5000/api/agents/files/ab"
    )
    assert files_url("wss://c.example/api/agents/ws", "ab") == (
        "https://c.example/api/agents/files/ab"
    )


async def test_a_bot_moves_from_one_node_to_another_with_its_trades(setup, tmp_path) -> None:
    files, agents, _ = setup
    old = agents.pool_dir("p1") / "bots" / "bot-1"
    _trading_bot(old)
    assert await files.export("p1", "bot-1")
    # Staged whole on the controller; the old pool's copy is gone: one copy only.
    assert _trades(tmp_path / "migrating" / "bot-1") == [(1, "BTC/USDT"), (2, "ETH/USDT")]
    assert not old.exists()
    await files.import_("p2", "bot-1")
    new = agents.pool_dir("p2") / "bots" / "bot-1"
    assert _trades(new) == [(1, "BTC/USDT"), (2, "ETH/USDT")]
    assert (new / "config.json").read_text() == '{"dry_run": true}'
    assert not (tmp_path / "migrating" / "bot-1").exists()
    assert files.tickets == {}  # every token forgotten
    assert sorted(p.name for p in (agents.pool_dir("p2") / ".transfer").iterdir()) == []


async def test_a_pool_without_the_bots_directory_stages_nothing(setup, tmp_path) -> None:
    files, agents, _ = setup
    agents.pool_dir("p1").mkdir(parents=True)
    assert not await files.export("p1", "bot-1")
    assert not (tmp_path / "migrating" / "bot-1").exists()


async def test_an_agent_not_connected_leaves_the_files_where_they_are(setup) -> None:
    files, agents, _ = setup
    _trading_bot(agents.pool_dir("p1") / "bots" / "bot-1")
    agents.offline.add("p1")
    with pytest.raises(OSError, match="not connected"):
        await files.export("p1", "bot-1")
    assert _trades(agents.pool_dir("p1") / "bots" / "bot-1")


async def test_landing_the_same_directory_again_changes_nothing(setup, tmp_path) -> None:
    """A crash between the upload and the agent's answer: staged and still in the old pool;
    the recovery lands staging there: the same directory (it packs to the same sha256),
    so nothing changes and staging goes."""
    files, agents, _ = setup
    _trading_bot(agents.pool_dir("p1") / "bots" / "bot-1")
    await files.export("p1", "bot-1")
    staged = tmp_path / "migrating" / "bot-1"
    shutil.copytree(staged, tmp_path / "copy", copy_function=shutil.copy2)
    await files.import_("p1", "bot-1")  # lands: the pool's copy was removed by the export
    shutil.copytree(tmp_path / "copy", staged, copy_function=shutil.copy2)
    await files.import_("p1", "bot-1")  # the same again: nothing to do
    assert _trades(agents.pool_dir("p1") / "bots" / "bot-1")
    assert not staged.exists() and not (agents.pool_dir("p1") / "archive").exists()


async def test_a_different_directory_in_the_pool_is_never_replaced(setup, tmp_path) -> None:
    """A stale staged copy (say) must not overwrite what the pool has: both stay."""
    files, agents, _ = setup
    _trading_bot(tmp_path / "migrating" / "bot-1")
    there = agents.pool_dir("p1") / "bots" / "bot-1"
    there.mkdir(parents=True)
    (there / "config.json").write_text("the pool's own")
    with pytest.raises(OSError, match="a different directory"):
        await files.import_("p1", "bot-1")
    assert sorted(p.name for p in there.iterdir()) == ["config.json"]
    assert (there / "config.json").read_text() == "the pool's own"
    assert _trades(tmp_path / "migrating" / "bot-1")


async def test_a_damaged_trade_database_is_not_landed(setup, tmp_path) -> None:
    files, agents, _ = setup
    stage = tmp_path / "migrating" / "bot-1"
    _trading_bot(stage)
    data = bytearray((stage / "tradesv3.dryrun.sqlite").read_bytes())
    data[100:4096] = b"\xff" * (4096 - 100)
    (stage / "tradesv3.dryrun.sqlite").write_bytes(bytes(data))
    with pytest.raises(OSError, match="import failed"):
        await files.import_("p2", "bot-1")
    assert not (agents.pool_dir("p2") / "bots" / "bot-1").exists()
    assert stage.is_dir()  # staging keeps it until a pool has it


def _tar(members: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


async def _put(server: TestServer, token: str, body: bytes, digest: str) -> int:
    async with aiohttp.ClientSession() as session:
        url = f"http://127.0.0.1:{server.port}/api/agents/files/{token}"
        async with session.put(url, data=body, headers={SHA_HEADER: digest}) as response:
            return response.status


async def test_uploads_are_checked_and_tokens_good_once(setup, tmp_path) -> None:
    files, _, server = setup
    (tmp_path / "migrating").mkdir()
    evil = _tar({"ok": b"x", "../../escaped": b"pwned"})
    digest = hashlib.sha256(evil).hexdigest()
    assert await _put(server, "f" * 64, evil, digest) == 404  # no such transfer
    files.tickets["a" * 64] = files_ticket = _ticket(files, "export")
    assert await _put(server, "a" * 64, evil, digest) == 400
    assert files_ticket.used
    assert await _put(server, "a" * 64, evil, digest) == 404  # used once already
    assert not (tmp_path / "migrating" / "bot-1").exists()
    assert not (tmp_path / "escaped").exists() and not (tmp_path.parent / "escaped").exists()
    good = _tar({"config.json": b"{}"})
    files.tickets["b" * 64] = _ticket(files, "export")
    assert await _put(server, "b" * 64, good, "0" * 64) == 400  # not its sha256
    files.tickets["c" * 64] = _ticket(files, "import")
    assert await _put(server, "c" * 64, good, hashlib.sha256(good).hexdigest()) == 404
    assert not (tmp_path / "migrating" / "bot-1").exists()
    assert sorted(p.name for p in (tmp_path / "migrating").iterdir()) == []


def _ticket(files: AgentFiles, op: str):  # type: ignore[no-untyped-def]
    from controller.moves.agent_files import Ticket

    return Ticket("bot-1", op, files.staging / "bot-1.tar")


async def test_a_bots_directory_replaced_by_a_link_is_never_followed(setup, tmp_path) -> None:
    """The bot's user replaced its directory with a link to another tenant's: nothing of
    that is sent, and the link stays where it was."""
    files, agents, _ = setup
    other = agents.pool_dir("p1") / "bots" / "other-bot"
    _trading_bot(other)
    (agents.pool_dir("p1") / "bots" / "bot-1").symlink_to(other)
    assert not await files.export("p1", "bot-1")
    assert not (tmp_path / "migrating" / "bot-1").exists()
    assert _trades(other) and (agents.pool_dir("p1") / "bots" / "bot-1").is_symlink()


class GivingUp(Agents):
    """The controller's request gives up (TRANSFER_TIMEOUT) while the agent's upload is
    still being unpacked; the agent's transfer runs on to its end."""

    def __init__(self, root: Path, unpacking: threading.Event) -> None:
        super().__init__(root)
        self.unpacking = unpacking
        self.transfers: list[asyncio.Task[FilesResponse]] = []

    async def request(self, pool_id: str, frame: FilesRequest, timeout: float) -> FilesResponse:
        self.transfers.append(asyncio.create_task(self.agent(pool_id).handle(frame)))
        assert await asyncio.to_thread(self.unpacking.wait, 10)
        raise BotUnavailable(f"agent of {pool_id} did not answer")


async def test_an_upload_its_move_gave_up_on_is_discarded_and_the_pool_keeps_it(
    tmp_path, monkeypatch
) -> None:
    """The move gave up (and released the bot where it is) while the upload went on: what
    arrives then is never staged, and the agent, refused, keeps the bot's directory."""
    import controller.moves.agent_files as agent_files

    unpacking, go = threading.Event(), threading.Event()
    real_unpack = agent_files.unpack

    def slow_unpack(archive: Path, target: Path) -> None:
        unpacking.set()
        go.wait(10)
        real_unpack(archive, target)

    monkeypatch.setattr(agent_files, "unpack", slow_unpack)
    agents = GivingUp(tmp_path, unpacking)
    async with serving(agents, tmp_path / "migrating") as (files, _):
        old = agents.pool_dir("p1") / "bots" / "bot-1"
        _trading_bot(old)
        with pytest.raises(OSError, match="did not answer"):
            await files.export("p1", "bot-1")
        go.set()
        response = await agents.transfers[0]
    assert "409" in response.error and "given up" in response.error
    assert _trades(old) == [(1, "BTC/USDT"), (2, "ETH/USDT")]  # the pool's copy, whole
    assert sorted(p.name for p in (tmp_path / "migrating").iterdir()) == []  # nothing staged


async def test_an_agent_keeps_a_directory_released_meanwhile(setup, tmp_path) -> None:
    """Uploaded, but the bot is no longer held in the newest desired state (it runs here
    again): the agent never deletes its directory under it."""
    files, agents, _ = setup
    old = agents.pool_dir("p1") / "bots" / "bot-1"
    _trading_bot(old)
    agents.released.add("bot-1")
    with pytest.raises(OSError, match="no longer held"):
        await files.export("p1", "bot-1")
    assert _trades(old) == [(1, "BTC/USDT"), (2, "ETH/USDT")]


async def test_an_agent_refuses_a_second_transfer_of_a_bot_under_way(setup) -> None:
    files, agents, _ = setup
    _trading_bot(agents.pool_dir("p1") / "bots" / "bot-1")
    agents.agent("p1").busy.add("bot-1")  # the transfer the controller gave up on
    with pytest.raises(OSError, match="still under way"):
        await files.export("p1", "bot-1")
    assert _trades(agents.pool_dir("p1") / "bots" / "bot-1")


async def test_a_file_whose_name_is_not_utf8_moves_with_its_bot(setup, tmp_path) -> None:
    """Such a name made every move of its bot fail (500) and so its node's drain."""
    files, agents, _ = setup
    old = agents.pool_dir("p1") / "bots" / "bot-1"
    _trading_bot(old)
    (old / os.fsdecode(b"odd\xe9")).write_bytes(b"mine")
    assert await files.export("p1", "bot-1")
    await files.import_("p2", "bot-1")
    new = agents.pool_dir("p2") / "bots" / "bot-1"
    assert (new / os.fsdecode(b"odd\xe9")).read_bytes() == b"mine" and _trades(new)


async def test_leftovers_of_interrupted_transfers_are_swept_at_start(setup, tmp_path) -> None:
    """On both sides; a staged directory (the crash recovery lands it), a pool's bot
    directories and whatever is not a transfer's own stay."""
    files, agents, _ = setup
    staging = tmp_path / "migrating"
    _trading_bot(staging / "bot-1")
    (staging / "bot-2.received.partial").mkdir(parents=True)
    for name in ("bot-2.upload", "bot-3.tar", "notes.txt", "..tar"):
        (staging / name).write_text("x")
    files.sweep()
    assert sorted(p.name for p in staging.iterdir()) == ["..tar", "bot-1", "notes.txt"]
    agent = agents.agent("p1")
    _trading_bot(agent.bots_dir / "bot-1")
    (agent.work_dir / "bot-1.gone").mkdir(parents=True)
    (agent.work_dir / "bot-2.incoming.partial").mkdir()
    (agent.work_dir / "bot-3.tar").write_text("x")
    agent.sweep()
    assert list(agent.work_dir.iterdir()) == [] and _trades(agent.bots_dir / "bot-1")
