"""Each bot's pool history: which pools it lived in, from when until when (the table
bot_pools). Written in the very transaction that places, moves or forgets the bot
(controller/store/allocation.py, store.py), so the history never disagrees with where the
store has it; read to decide which restore points are the bot's
(controller/backups/points.py accepted).

By time, not by pool id alone: a pool id is taken again after its pool is removed, and a
later pool with that id has no claim on the bots an earlier one held.
"""

from __future__ import annotations

import sqlite3

from controller.records import Stay


def arrive(db: sqlite3.Connection, bot_id: str, pool_id: str, now: float) -> None:
    """The bot lives in `pool_id` from `now` on; its stay where it was ends then."""
    leave(db, bot_id, now)
    db.execute(
        "INSERT INTO bot_pools (bot_id, pool_id, since) VALUES (?, ?, ?)", (bot_id, pool_id, now)
    )


def leave(db: sqlite3.Connection, bot_id: str, now: float) -> None:
    """The bot's current stay ends at `now` (never before it began)."""
    db.execute(
        "UPDATE bot_pools SET until = max(since, ?) WHERE bot_id = ? AND until IS NULL",
        (now, bot_id),
    )


def forget(db: sqlite3.Connection, bot_id: str) -> None:
    """A deleted bot's history goes with it: a later bot with its id starts afresh."""
    db.execute("DELETE FROM bot_pools WHERE bot_id = ?", (bot_id,))


def stays(db: sqlite3.Connection, bot_id: str) -> list[Stay]:
    """The bot's stays, oldest first."""
    rows = db.execute(
        "SELECT pool_id, since, until FROM bot_pools WHERE bot_id = ? ORDER BY since, rowid",
        (bot_id,),
    )
    return [Stay(pool_id, since, until) for pool_id, since, until in rows]
