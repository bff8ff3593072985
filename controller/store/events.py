"""The events table: a bounded history of health and recovery events (controller/events.py).
Ids only grow, so a client resumes a stream after the last id it saw."""

from __future__ import annotations

import json
import sqlite3

from controller.records import Event


def add_events(db: sqlite3.Connection, events: list[Event], keep: int) -> list[int]:
    """Store events and keep only the last `keep`; returns their ids."""
    ids = [
        db.execute(
            "INSERT INTO events (ts, type, pool_id, bot_id, user_id, reason, detail)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)",
            (e.ts, e.type, e.pool_id, e.bot_id, e.user_id, e.reason,
             json.dumps(e.detail, default=str)),
        ).lastrowid
        for e in events
    ]  # fmt: skip
    db.execute("DELETE FROM events WHERE id <= ?", (ids[-1] - keep,))
    return ids


def read_events(
    db: sqlite3.Connection, limit: int, since_id: int | None, user_id: str | None
) -> list[Event]:
    """Oldest first: the first `limit` events after `since_id`, or else the last `limit`.

    user_id None reads everyone's; a user's are those of their own bots.
    """
    where, args = ["1"], []
    if user_id is not None:
        where.append("user_id = ?")
        args.append(user_id)
    if since_id is not None:
        where.append("id > ?")
        args.append(since_id)
    order = "ASC" if since_id is not None else "DESC"
    rows = db.execute(
        f"SELECT * FROM events WHERE {' AND '.join(where)} ORDER BY id {order} LIMIT ?",
        (*args, limit),
    ).fetchall()
    if order == "DESC":
        rows.reverse()
    return [
        Event(r["id"], r["ts"], r["type"], r["pool_id"], r["bot_id"], r["user_id"],
              r["reason"], json.loads(r["detail"]))
        for r in rows
    ]  # fmt: skip
