"""SQLite plumbing the store's parts share: transactions, rows into records, and the
statements several writes make (a generation bump, a slot freed)."""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Callable
from typing import Any, TypeVar

import structlog

from common.states import RunState
from controller.errors import NotFound
from controller.records import BotRecord, BotSecrets, PoolRecord, RestartRecord

log = structlog.get_logger("controller.store")
T = TypeVar("T")


def in_transaction(db: sqlite3.Connection, fn: Callable[[sqlite3.Connection], T]) -> T:
    """Run fn in one transaction (BEGIN IMMEDIATE ... COMMIT), rolled back if it fails."""
    db.execute("BEGIN IMMEDIATE")
    try:
        result = fn(db)
        db.execute("COMMIT")  # a failed COMMIT (busy, full) may leave it open
    except BaseException:
        roll_back(db)
        raise
    return result


def rolled_back(db: sqlite3.Connection, fn: Callable[[sqlite3.Connection], T]) -> T:
    """Run fn in a transaction that is always rolled back: a what-if."""
    db.execute("BEGIN IMMEDIATE")
    try:
        return fn(db)
    finally:
        roll_back(db)


def roll_back(db: sqlite3.Connection) -> None:
    """Undo the open transaction, if any: after some errors (SQLITE_FULL, IOERR, NOMEM)
    SQLite has rolled it back by itself, and a ROLLBACK then would fail. A rollback that
    fails anyway is logged; it never takes the place of the error that called for it."""
    if not db.in_transaction:
        return
    try:
        db.execute("ROLLBACK")
    except sqlite3.Error as exc:
        log.error("store_rollback_failed", error=str(exc))


def pool_of(row: sqlite3.Row) -> PoolRecord:
    return PoolRecord(
        id=row["id"], num=row["num"], port_start=row["port_start"], capacity=row["capacity"],
        owner=row["owner"], used=row["used"], generation=row["generation"],
        token_hash=row["token_hash"], created_at=row["created_at"], emptied_at=row["emptied_at"],
        launch=row["launch"], preloader_nonce=row["preloader_nonce"], legacy_of=row["legacy_of"],
        removing=bool(row["removing"]), draining=bool(row["draining"]),
        abandoned=bool(row["abandoned"]),
        market_data=None if row["market_data"] is None else bool(row["market_data"]),
    )  # fmt: skip


def bot_of(row: sqlite3.Row) -> BotRecord:
    return BotRecord(
        id=row["id"], user_id=row["user_id"], pool_id=row["pool_id"], slot=row["slot"],
        port=row["port"], strategy=row["strategy"], strategy_source=row["strategy_source"],
        config=json.loads(row["config"]), secrets=BotSecrets(**json.loads(row["secrets"])),
        run=RunState(row["run"]), nonce=row["nonce"], deleting=bool(row["deleting"]),
        purge=bool(row["purge"]), created_at=row["created_at"], held=bool(row["held"]),
        restarts=RestartRecord(row["restart_attempts"], row["restart_cycles"],
                               row["restart_last"], bool(row["failed"]), row["restart_memory"]),
        memory_limit=row["memory_limit"],
        cpu_limit=None if row["cpu_millis"] is None else row["cpu_millis"] / 1000,
    )  # fmt: skip


def pool_row(db: sqlite3.Connection, pool_id: str) -> PoolRecord:
    row = db.execute("SELECT * FROM pools WHERE id = ?", (pool_id,)).fetchone()
    if row is None:
        raise NotFound(f"pool {pool_id} is not in the store")
    return pool_of(row)


def bot_row(db: sqlite3.Connection, bot_id: str) -> BotRecord:
    row = db.execute("SELECT * FROM bots WHERE id = ?", (bot_id,)).fetchone()
    if row is None:
        raise NotFound(f"bot {bot_id} is not in the store")
    return bot_of(row)


def set_columns(db: sqlite3.Connection, table: str, row_id: str, changes: dict[str, Any]) -> int:
    """UPDATE the named columns of one row (names checked by the callers); rows changed."""
    assignments = ", ".join(f"{k} = ?" for k in changes)
    sql = f"UPDATE {table} SET {assignments} WHERE id = ?"
    return db.execute(sql, (*changes.values(), row_id)).rowcount


def bump(db: sqlite3.Connection, pool_id: str) -> int:
    """The pool's desired state changed: its generation goes up; returns the new one."""
    db.execute("UPDATE pools SET generation = generation + 1 WHERE id = ?", (pool_id,))
    return db.execute("SELECT generation FROM pools WHERE id = ?", (pool_id,)).fetchone()[0]


def release(db: sqlite3.Connection, pool_id: str) -> None:
    """One slot of the pool is free again (its bot was deleted or moved away)."""
    db.execute(
        "UPDATE pools SET used = used - 1,"
        " emptied_at = CASE WHEN used = 1 THEN ? ELSE NULL END WHERE id = ?",
        (time.time(), pool_id),
    )
