"""Restore points sent to the controller (BACKUP_TRANSPORT=controller): the agent's
Backups with its ControllerTarget against the controller's route, over real HTTP on
loopback; the checks of what an agent may write; the backlog when it is cut off."""

from __future__ import annotations

import asyncio
import shutil
import sqlite3
import stat
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from agent.backup_targets import ControllerTarget
from agent.backups import BackupOptions, Backups
from common.protocol import BotSpec
from common.restore_points import CHECKED, stamp_of, time_of
from common.states import RunState
from controller.api.agent_backups import APIAgentBackups
from controller.api.middleware import error_middleware
from controller.backups.points import RestorePoint, list_points
from controller.backups.receive import MAX_AHEAD, PointReceiver, parse_checked, parse_point
from controller.backups.service import swap_in
from controller.errors import BadRequest
from controller.pools.live import hash_token

DB = "tradesv3.dryrun.sqlite"
T0 = 1_780_000_000.25


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        self.now += 1
        return self.now


def trade_db(path: Path, trades: int) -> None:
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE IF NOT EXISTS trades (id INTEGER PRIMARY KEY, pair TEXT)")
    db.executemany("INSERT INTO trades (pair) VALUES (?)", [("BTC/USDT",)] * trades)
    db.commit()
    db.close()


def count(path: Path) -> int:
    db = sqlite3.connect(path)
    try:
        return db.execute("SELECT count(*) FROM trades").fetchone()[0]
    finally:
        db.close()


def spec(bot_id: str = "b1") -> BotSpec:
    return BotSpec(bot_id, 9000, ["freqtrade", "trade"], {"config.json": b"{}"}, RunState.RUNNING)


class Setup:
    def __init__(self, base: Path, clock: Clock) -> None:
        self.root = base / "backups"  # the controller's BACKUP_DIR
        self.bots = base / "pool" / "bots"  # the pool's bots/, on its node
        self.bots.mkdir(parents=True)
        (self.bots / "b1").mkdir()
        self.clock = clock
        self.registry = SimpleNamespace(
            pools={"p1": SimpleNamespace(token_hash=hash_token("t1")),
                   "p2": SimpleNamespace(token_hash=hash_token("t2"))},
            bots={"b1": SimpleNamespace(pool_id="p1"), "b2": SimpleNamespace(pool_id="p2")},
        )  # fmt: skip
        self.receiver = PointReceiver(self.root, self.registry, 30, clock=lambda: clock.now)  # type: ignore[arg-type]
        self.url = ""

    def backups(self, pool: str = "p1", token: str = "t1") -> Backups:
        target = ControllerTarget(self.url, pool, token)
        options = BackupOptions(None, 5.0, 30)
        return Backups(options, self.bots, lambda _port: None, clock=self.clock, sink=target)

    def points(self, bot: str = "b1") -> list[RestorePoint]:
        return list_points(self.root, bot)


@pytest.fixture
def base() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="ftpool-receive-"))
    yield path
    shutil.rmtree(path)


@pytest.fixture
async def setup(base: Path) -> AsyncIterator[Setup]:
    s = Setup(base, Clock())
    app = web.Application(middlewares=[error_middleware])
    app.add_routes(APIAgentBackups(s.receiver).routes())
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    s.url = f"ws://127.0.0.1:{server.port}/api/agents/ws"
    yield s
    await server.close()


# -- the pure checks ----------------------------------------------------------------------


def test_a_point_is_named_as_restore_points_are_and_near_the_controllers_time() -> None:
    now = T0
    good = f"{DB}@{stamp_of(now - 10)}"
    assert parse_point(good, now) == (DB, stamp_of(now - 10))
    for bad in (
        f"../{DB}@{stamp_of(now)}", f"{DB}", f"config.json@{stamp_of(now)}",
        f"{DB}@{stamp_of(now)}/x", f"{DB}@2026", f"{DB}@{stamp_of(now + MAX_AHEAD + 5)}",
        f"{DB}@{stamp_of(now - 7200)}",
    ):  # fmt: skip
        with pytest.raises(BadRequest):
            parse_point(bad, now)


def test_a_mark_never_claims_more_than_the_controllers_time() -> None:
    stamp = stamp_of(T0 - 30)
    assert parse_checked({"at": T0 - 5}, stamp, T0) == T0 - 5
    assert parse_checked({"at": T0 + 999}, stamp, T0) == T0  # an agent ahead: now
    assert parse_checked({"at": 0}, stamp, T0) == time_of(stamp)  # never before the point
    for bad in ({}, {"at": "1"}, {"at": True}, {"at": float("nan")}, [], {"at": 1, "x": 2}):
        with pytest.raises(BadRequest):
            parse_checked(bad, stamp, T0)


def test_a_restore_in_staging_keeps_the_replaced_database_aside(tmp_path: Path) -> None:
    stage = tmp_path / "migrating" / "b1"
    stage.mkdir(parents=True)
    trade_db(stage / DB, 5)
    (stage / f"{DB}-wal").write_bytes(b"not for the restored one")
    point_path = tmp_path / "point.sqlite"
    trade_db(point_path, 2)
    point = RestorePoint(DB, stamp_of(T0), "p1", point_path, point_path.stat().st_size)
    kept = swap_in(point, stage, "X")
    assert kept == f"{DB}.before-restore-X"
    assert not (stage / f"{DB}-wal").exists() and (stage / f"{kept}-wal").exists()
    assert count(stage / DB) == 2 and count(stage / kept) == 5
    damaged = tmp_path / "damaged.sqlite"
    damaged.write_bytes(b"SQLite format 3\0" + b"\xff" * 100)
    with pytest.raises(ValueError):
        swap_in(RestorePoint(DB, stamp_of(T0), "p1", damaged, 116), stage, "Y")
    assert count(stage / DB) == 2  # untouched


# -- over HTTP ----------------------------------------------------------------------------


async def test_changed_databases_reach_the_controllers_target_private(setup: Setup) -> None:
    trade_db(setup.bots / "b1" / DB, 3)
    b = setup.backups()
    await asyncio.to_thread(b.round, [spec()])
    assert b.state.ok, b.state.error
    [point] = setup.points()
    assert (point.pool_id, point.db, count(point.path)) == ("p1", DB, 3)
    assert stat.S_IMODE(point.path.stat().st_mode) == 0o600
    for d in (setup.root / "pools", setup.root / "pools" / "p1", point.path.parent):
        assert stat.S_IMODE(d.stat().st_mode) == 0o700
    mark = point.path.parent / CHECKED
    assert mark.read_text() == point.stamp
    # Unchanged: no new point, the mark moves on (the agent's time of the round).
    await asyncio.to_thread(b.round, [spec()])
    assert len(setup.points()) == 1
    assert mark.stat().st_mtime == pytest.approx(setup.clock.now, abs=1.5)
    assert mark.stat().st_mtime > point.time
    # Changed: a new point, the newest named by the mark.
    trade_db(setup.bots / "b1" / DB, 1)
    await asyncio.to_thread(b.round, [spec()])
    assert [count(p.path) for p in setup.points()] == [3, 4]
    assert mark.read_text() == setup.points()[-1].stamp
    assert not (setup.root / "pools" / "p1" / "b1" / "files").exists()  # its own already


async def test_a_pool_writes_only_its_own_bots_points_with_its_own_token(setup: Setup) -> None:
    trade_db(setup.bots / "b1" / DB, 3)
    wrong_token = setup.backups("p1", "t2")
    await asyncio.to_thread(wrong_token.round, [spec()])
    assert not wrong_token.state.ok and "401" in wrong_token.state.error
    other_pools_bot = setup.backups("p2", "t2")  # b1 is p1's
    await asyncio.to_thread(other_pools_bot.round, [spec()])
    assert not other_pools_bot.state.ok and "404" in other_pools_bot.state.error
    assert setup.points() == [] and not (setup.root / "pools" / "p2").exists()


async def test_a_point_is_never_replaced_and_must_be_whole(setup: Setup) -> None:
    trade_db(setup.bots / "b1" / DB, 3)
    data = (setup.bots / "b1" / DB).read_bytes()
    target = ControllerTarget(setup.url, "p1", "t1")
    stamp = stamp_of(setup.clock.now)
    await asyncio.to_thread(target.point, "b1", DB, stamp, data, 0)
    await asyncio.to_thread(target.point, "b1", DB, stamp, data, 0)  # again: the same, fine
    trade_db(setup.bots / "b1" / DB, 1)
    other = (setup.bots / "b1" / DB).read_bytes()
    with pytest.raises(OSError, match="409"):
        await asyncio.to_thread(target.point, "b1", DB, stamp, other, 0)
    with pytest.raises(OSError, match=r"400.*(not a readable database|damaged)"):
        await asyncio.to_thread(target.point, "b1", DB, stamp_of(setup.clock.now + 1),
                                b"SQLite format 3\0" + b"\xff" * 4000, 0)  # fmt: skip
    [point] = setup.points()
    assert count(point.path) == 3
    assert [p.name for p in point.path.parent.iterdir() if p.name.endswith(".upload")] == []


async def test_a_cut_off_agent_keeps_no_backlog_and_the_newest_wins(setup: Setup) -> None:
    trade_db(setup.bots / "b1" / DB, 3)
    b = setup.backups()
    await asyncio.to_thread(b.round, [spec()])
    first = setup.points()[-1]
    # Cut off: a port where nothing listens.
    b.sink = ControllerTarget("ws://127.0.0.1:9/api/agents/ws", "p1", "t1")
    for trades in (1, 1, 1):
        trade_db(setup.bots / "b1" / DB, trades)
        await asyncio.to_thread(b.round, [spec()])
        assert not b.state.ok and "unreachable" in b.state.error
    assert len(setup.points()) == 1
    # Back: one point, of the database as it is now (every trade), not the three missed.
    b.sink = ControllerTarget(setup.url, "p1", "t1")
    await asyncio.to_thread(b.round, [spec()])
    assert b.state.ok
    points = setup.points()
    assert [count(p.path) for p in points] == [3, 6] and points[0] == first


async def test_a_database_unchanged_for_days_is_still_marked(setup: Setup) -> None:
    trade_db(setup.bots / "b1" / DB, 3)
    b = setup.backups()
    await asyncio.to_thread(b.round, [spec()])
    setup.clock.now += 3 * 86400  # both clocks: the agent's and the controller's
    await asyncio.to_thread(b.round, [spec()])
    assert b.state.ok, b.state.error
    [point] = setup.points()
    assert (point.path.parent / CHECKED).stat().st_mtime == pytest.approx(setup.clock.now, abs=1.5)


async def test_a_point_the_controller_lost_is_sent_again(setup: Setup) -> None:
    trade_db(setup.bots / "b1" / DB, 3)
    b = setup.backups()
    await asyncio.to_thread(b.round, [spec()])
    shutil.rmtree(setup.root / "pools" / "p1")  # its disk replaced, say
    await asyncio.to_thread(b.round, [spec()])  # the mark is refused (404): forgotten
    assert b.state.ok and setup.points() == []
    await asyncio.to_thread(b.round, [spec()])
    assert [count(p.path) for p in setup.points()] == [3]
