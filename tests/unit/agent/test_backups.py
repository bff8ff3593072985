"""The agent's backups: consistent snapshots of live databases, read as the bot's user,
written private; thinning; a failing target; restores that keep the replaced database."""

import os
import shutil
import sqlite3
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.backups import BackupOptions, Backups, snapshot
from agent.files import make_bot_dir
from common.protocol import BotSpec
from common.restore_points import CHECKED, stamp_of, time_of, to_delete
from common.states import RunState

NOBODY = (65534, 65534)
DB = "tradesv3.dryrun.sqlite"


class Clock:
    def __init__(self) -> None:
        self.now = 1_780_000_000.25

    def __call__(self) -> float:
        self.now += 1
        return self.now


def trade_db(path: Path, trades: int, owner: tuple[int, int] | None = None) -> None:
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE IF NOT EXISTS trades (id INTEGER PRIMARY KEY, pair TEXT)")
    db.executemany("INSERT INTO trades (pair) VALUES (?)", [("BTC/USDT",)] * trades)
    db.commit()
    db.close()
    if owner:
        os.chown(path, *owner)


def count(data_or_path: bytes | Path) -> int:
    db = sqlite3.connect(":memory:")
    if isinstance(data_or_path, bytes):
        db.deserialize(data_or_path)
    else:
        db.close()
        db = sqlite3.connect(data_or_path)
    try:
        return db.execute("SELECT count(*) FROM trades").fetchone()[0]
    finally:
        db.close()


@pytest.fixture
def pool() -> Iterator[tuple[Path, Path]]:
    """A pool's bots/ and backup target, its bots' directories reachable by their users as
    in a pool (pytest's own temporary directories are root's alone)."""
    base = Path(tempfile.mkdtemp(prefix="ftpool-backups-"))
    base.chmod(0o711)
    bots, target = base / "bots", base / "backup"
    bots.mkdir(mode=0o711)
    target.mkdir(mode=0o700)
    yield bots, target
    shutil.rmtree(base)


def backups(bots: Path, target: Path, owner=None, clock=None) -> Backups:
    return Backups(
        BackupOptions(target, 5.0, 30), bots, lambda _port: owner, clock=clock or Clock()
    )


def spec(bot_id: str = "b1", run: RunState = RunState.RUNNING) -> BotSpec:
    files = {"config.json": b"{}", "user_data/strategies/S.py": b"class S: pass"}
    return BotSpec(bot_id, 9000, ["freqtrade", "trade"], files, run)


def test_stamps_sort_as_time_and_round_trip() -> None:
    t = 1_780_000_000.123456
    assert abs(time_of(stamp_of(t)) - t) < 1e-5
    assert stamp_of(t) < stamp_of(t + 0.5) < stamp_of(t + 86400)


def test_thinning_keeps_recent_hourly_and_daily_points() -> None:
    now = 1_780_000_000.0
    every_10s_for_2h = [stamp_of(now - i * 10) for i in range(720)]
    daily = [stamp_of(now - d * 86400) for d in range(2, 40)]
    gone = set(to_delete(every_10s_for_2h + daily, now, retention_days=30))
    kept = set(every_10s_for_2h + daily) - gone
    assert set(sorted(every_10s_for_2h)[-12:]) <= kept  # the newest twelve
    assert len({s[:11] for s in kept if now - time_of(s) < 7200}) >= 2  # each hour's newest
    assert all(now - time_of(s) < 30 * 86400 for s in kept)  # nothing past the retention
    assert len(kept) < 12 + 3 + 30


def test_a_live_database_is_copied_consistently(tmp_path: Path) -> None:
    path = tmp_path / DB
    trade_db(path, 3)
    writer = sqlite3.connect(path)
    writer.execute("INSERT INTO trades (pair) VALUES ('ETH/USDT')")  # not committed yet
    assert count(snapshot(path)) == 3
    writer.commit()
    assert count(snapshot(path)) == 4
    writer.close()


def test_changed_databases_config_and_strategy_are_backed_up_private(pool) -> None:
    bots, target = pool
    make_bot_dir(bots / "b1", NOBODY)
    trade_db(bots / "b1" / DB, 2, NOBODY)
    b = backups(bots, target, NOBODY)
    b.round([spec()])
    snaps = sorted((target / "b1" / DB).glob("*.sqlite"))
    assert len(snaps) == 1 and count(snaps[0]) == 2
    assert (target / "b1" / "files" / "user_data/strategies/S.py").read_bytes() == b"class S: pass"
    for path in (target / "b1", snaps[0], target / "b1" / "files" / "config.json"):
        assert path.stat().st_uid == 0 and path.stat().st_mode & 0o077 == 0
    b.round([spec()])  # nothing changed: no new snapshot
    assert len(list((target / "b1" / DB).glob("*.sqlite"))) == 1
    trade_db(bots / "b1" / DB, 1)
    b.round([spec()])
    assert [count(p) for p in sorted((target / "b1" / DB).glob("*.sqlite"))] == [2, 3]
    assert b.state.ok and b.state.last_ok > 0


def test_each_round_marks_until_when_the_newest_snapshot_is_the_database(pool) -> None:
    bots, target = pool
    make_bot_dir(bots / "b1", NOBODY)
    trade_db(bots / "b1" / DB, 2, NOBODY)
    clock = Clock()
    b = backups(bots, target, NOBODY, clock)
    b.round([spec()])
    [snap] = (target / "b1" / DB).glob("*.sqlite")
    mark = target / "b1" / DB / CHECKED
    assert mark.read_text() == snap.name[: -len(".sqlite")]
    assert mark.stat().st_uid == 0 and mark.stat().st_mode & 0o077 == 0
    b.round([spec()])  # unchanged: no new snapshot, the mark's time moves on
    b.round([spec()])
    assert list((target / "b1" / DB).glob("*.sqlite")) == [snap]
    assert mark.stat().st_mtime == pytest.approx(clock.now)
    trade_db(bots / "b1" / DB, 1)
    b.round([spec()])  # a new snapshot: the mark names it
    newest = max((target / "b1" / DB).glob("*.sqlite"))
    assert newest != snap and mark.read_text() == newest.name[: -len(".sqlite")]


def test_a_held_bot_is_left_alone(pool) -> None:
    bots, target = pool
    make_bot_dir(bots / "b1", None)
    trade_db(bots / "b1" / DB, 1)
    backups(bots, target).round([spec(run=RunState.HELD)])
    assert not (target / "b1").exists()


def test_a_link_to_another_bots_database_is_not_read(pool) -> None:
    bots, target = pool
    make_bot_dir(bots / "other", None)  # root's, private: another tenant's bot
    trade_db(bots / "other" / DB, 5)
    make_bot_dir(bots / "b1", NOBODY)
    (bots / "b1" / DB).symlink_to(bots / "other" / DB)
    b = backups(bots, target, NOBODY)
    b.round([spec()])
    assert not list((target / "b1").glob(f"{DB}/*.sqlite"))
    assert b.state.ok  # the bot's problem, not the target's


@pytest.mark.parametrize("breakage", ["missing", "a file"])
def test_a_failing_target_is_reported_and_recovers(pool, breakage: str) -> None:
    bots, target = pool
    make_bot_dir(bots / "b1", None)
    trade_db(bots / "b1" / DB, 1)
    b = backups(bots, target)
    if breakage == "missing":
        target.rmdir()
    else:
        (target / "b1").write_text("not a directory")
    b.round([spec()])
    b.round([spec()])
    assert not b.state.ok and b.state.failures == 2 and b.state.error
    if breakage == "missing":
        target.mkdir()
    else:
        (target / "b1").unlink()
    b.round([spec()])
    assert b.state.ok and b.state.failures == 0
    assert len(list((target / "b1" / DB).glob("*.sqlite"))) == 1


async def test_a_restore_keeps_the_replaced_database_aside(pool) -> None:
    bots, target = pool
    make_bot_dir(bots / "b1", NOBODY)
    trade_db(bots / "b1" / DB, 4, NOBODY)
    b = backups(bots, target, NOBODY)
    b.round([spec()])
    point = next((target / "b1" / DB).glob("*.sqlite")).name[: -len(".sqlite")]
    os.unlink(bots / "b1" / DB)
    trade_db(bots / "b1" / DB, 1, NOBODY)  # a fresh database after a lost disk
    (bots / "b1" / f"{DB}-journal").write_bytes(b"stale")
    kept = await b.restore("b1", 9000, DB, point)
    assert kept.startswith(f"{DB}.before-restore-")
    assert not (bots / "b1" / f"{DB}-journal").exists()
    # The replaced database's journal goes with it, where SQLite looks for it.
    assert (bots / "b1" / f"{kept}-journal").read_bytes() == b"stale"
    assert count(bots / "b1" / DB) == 4 and count(bots / "b1" / kept) == 1
    st = (bots / "b1" / DB).stat()
    assert (st.st_uid, st.st_gid) == NOBODY and st.st_mode & 0o077 == 0
    b.close()


async def test_a_damaged_point_is_refused_and_the_database_stays(pool) -> None:
    """A truncated snapshot (a full disk, a bucket that lies) is never restored; a copy
    left by a restore interrupted earlier does not stand in the way."""
    bots, target = pool
    make_bot_dir(bots / "b1", None)
    trade_db(bots / "b1" / DB, 3)
    b = backups(bots, target)
    b.round([spec()])
    path = next((target / "b1" / DB).glob("*.sqlite"))
    point = path.name[: -len(".sqlite")]
    whole = path.read_bytes()
    path.write_bytes(whole[: len(whole) // 2])
    with pytest.raises(ValueError, match="restore point"):
        await b.restore("b1", 9000, DB, point)
    assert count(bots / "b1" / DB) == 3 and sorted(os.listdir(bots / "b1")) == [DB]
    path.write_bytes(whole)
    (bots / "b1" / f".{DB}.restoring").write_bytes(b"half")
    assert (await b.restore("b1", 9000, DB, point)).startswith(f"{DB}.before-restore-")
    assert count(bots / "b1" / DB) == 3
    assert not (bots / "b1" / f".{DB}.restoring").exists()
    b.close()


async def test_a_restore_into_a_lost_directory_makes_it_again(pool) -> None:
    bots, target = pool
    make_bot_dir(bots / "b1", None)
    trade_db(bots / "b1" / DB, 2)
    b = backups(bots, target)
    b.round([spec()])
    point = next((target / "b1" / DB).glob("*.sqlite")).name[: -len(".sqlite")]
    for path in (bots / "b1").iterdir():
        path.unlink()
    (bots / "b1").rmdir()
    assert await b.restore("b1", 9000, DB, point) == ""
    assert count(bots / "b1" / DB) == 2
    b.close()
