"""Restore points as the controller lists them from the target, and the choice of one."""

import sqlite3
from dataclasses import replace
from pathlib import Path

import pytest

from common.restore_points import stamp_of
from controller.backups.points import (
    RestorePoint,
    accepted,
    choose,
    latest,
    list_points,
    parse_choice,
)
from controller.backups.service import expired
from controller.errors import BadRequest, NotFound
from controller.records import Stay

DB = "tradesv3.dryrun.sqlite"
T0 = 1_780_000_000.0


def snapshot(root: Path, pool: str, bot: str, t: float, trades: int) -> str:
    directory = root / "pools" / pool / bot / DB
    directory.mkdir(parents=True, exist_ok=True)
    stamp = stamp_of(t)
    db = sqlite3.connect(directory / f"{stamp}.sqlite")
    db.execute("CREATE TABLE trades (id INTEGER PRIMARY KEY, is_open BOOLEAN)")
    db.executemany("INSERT INTO trades (is_open) VALUES (?)", [(i % 2,) for i in range(trades)])
    db.commit()
    db.close()
    return f"{DB}@{stamp}"


def test_points_of_every_pool_the_bot_lived_in_with_their_trades(tmp_path: Path) -> None:
    old = snapshot(tmp_path, "p1", "b1", T0, 2)
    new = snapshot(tmp_path, "p2", "b1", T0 + 60, 3)
    snapshot(tmp_path, "p2", "b2", T0 + 30, 9)  # another bot's
    (tmp_path / "pools" / "p2" / "b1" / DB / "junk.sqlite").write_text("x")
    points = list_points(tmp_path, "b1")
    assert [p.id for p in points] == [old, new]
    assert [(p.pool_id, p.trades, p.open_trades) for p in points] == [("p1", 2, 1), ("p2", 3, 1)]
    assert points[1].to_json()["time"].startswith("2026-")
    assert list_points(tmp_path, "../p2") == []


def test_a_snapshot_whose_trades_never_end_counts_as_unknown(tmp_path: Path) -> None:
    """A bot owns its database: `trades` made a view that never ends (or any view) must
    not hold the controller's thread; the point is listed with its trades unknown."""
    directory = tmp_path / "pools" / "p1" / "b1" / DB
    directory.mkdir(parents=True)
    for t, sql in (
        (T0, "CREATE VIEW trades AS WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL "
             "SELECT x + 1 FROM c) SELECT 0 AS is_open FROM c"),
        (T0 + 60, "CREATE VIEW trades AS SELECT 1 AS is_open"),
    ):  # fmt: skip
        db = sqlite3.connect(directory / f"{stamp_of(t)}.sqlite")
        db.execute(sql)
        db.commit()
        db.close()
    points = list_points(tmp_path, "b1")
    assert [(p.trades, p.open_trades) for p in points] == [(None, None), (None, None)]


def test_a_point_is_chosen_by_id_or_by_time(tmp_path: Path) -> None:
    first = snapshot(tmp_path, "p1", "b1", T0, 1)
    second = snapshot(tmp_path, "p1", "b1", T0 + 60, 2)
    points = list_points(tmp_path, "b1")
    assert choose(points, first, None, "p1").id == first
    assert choose(points, None, T0 + 59, "p1").id == first
    assert choose(points, None, T0 + 3600, "p1").id == second
    with pytest.raises(NotFound):
        choose(points, None, T0 - 1, "p1")
    with pytest.raises(NotFound):
        choose(points, f"{DB}@20200101T000000.000000Z", None, "p1")


def test_a_failover_takes_the_newest_point_of_each_database(tmp_path: Path) -> None:
    snapshot(tmp_path, "p1", "b1", T0, 1)
    newest = snapshot(tmp_path, "p2", "b1", T0 + 60, 2)  # after a move to p2
    live = tmp_path / "pools" / "p1" / "b1" / "tradesv3.sqlite"
    live.mkdir(parents=True)
    (live / f"{stamp_of(T0 + 30)}.sqlite").write_bytes(b"")  # it traded live before
    points = list_points(tmp_path, "b1")
    assert [p.id for p in latest(points)] == [f"tradesv3.sqlite@{stamp_of(T0 + 30)}", newest]
    assert latest([]) == []
    # The same point in the bucket only, and locally: the local copy is taken.
    remote = replace(points[-1], local=False)
    assert latest([points[-1], remote])[0].local and latest([remote, points[-1]])[0].local


def test_a_copy_in_the_current_pool_wins(tmp_path: Path) -> None:
    point = snapshot(tmp_path, "p1", "b1", T0, 1)
    snapshot(tmp_path, "p2", "b1", T0, 1)
    assert choose(list_points(tmp_path, "b1"), point, None, "p2").pool_id == "p2"


@pytest.mark.parametrize(
    "body",
    [None, [], {}, {"restorePoint": "x", "time": "y"}, {"restorePoint": "../etc@1"},
     {"restorePoint": f"{DB}@../../x"}, {"time": "yesterday"}, {"time": 5}, {"other": 1}],
)  # fmt: skip
def test_bad_bodies_are_refused(body: object) -> None:
    with pytest.raises(BadRequest):
        parse_choice(body)


def test_good_bodies() -> None:
    point = f"{DB}@20261130T124300.123456Z"
    assert parse_choice({"restorePoint": point}) == (point, None)
    assert parse_choice({"time": "2026-11-30T12:43:00Z"})[1] == pytest.approx(1796042580.0)
    naive, aware = (
        parse_choice({"time": "2026-11-30T12:43:00"}),
        parse_choice({"time": "2026-11-30T12:43:00+00:00"}),
    )
    assert naive == aware


def test_deleted_bots_backups_expire_after_the_retention_or_at_once_when_purged() -> None:
    now, day = T0, 86400.0
    dirs = [("live", now - 90 * day), ("old", now - 31 * day), ("recent", now - day),
            ("purged", now)]  # fmt: skip
    assert expired(dirs, {"live"}, {"purged"}, now, 30 * day) == ["old", "purged"]
    assert expired(dirs, {"live", "purged"}, {"purged"}, now, 30 * day) == ["old"]


def stamped(pool: str, t: float) -> RestorePoint:
    return RestorePoint(DB, stamp_of(t), pool, Path("/x"), 1)


def test_accepted_points_are_of_the_bots_pools_while_it_lived_there() -> None:
    stays = [Stay("p1", 1000.0, 5000.0), Stay("p2", 5000.0)]
    slack = 100.0
    kept = [
        stamped("p1", 1000.0), stamped("p1", 5050.0),  # its last round there, a clock ahead
        stamped("p2", 4950.0), stamped("p2", 4e9),  # a clock behind; its pool now: no end
    ]  # fmt: skip
    refused = [
        stamped("p1", 5200.0),  # p1's, made after the bot left (and its slack)
        stamped("p3", 2000.0),  # a pool it never lived in
        stamped("p2", 4800.0),  # p2's, before the bot came
        stamped("p1", 950.0),  # before the bot was created: a deleted bot's of its id
    ]
    assert accepted([*kept, *refused], stays, 1000.0, {}, slack) == kept
    # p1 now and p2 are the pools it lived in (p1 made before the bot left it).
    assert accepted(kept, stays, 1000.0, {"p1": 500.0, "p2": 4000.0}, slack) == kept
    # p1's id taken by a later pool: its directory is that one's since.
    assert accepted(kept, stays, 1000.0, {"p1": 6000.0}, slack) == kept[2:]
    assert accepted(kept, [], 0.0, {}) == []  # no history: nothing is the bot's
