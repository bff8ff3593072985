"""The SQLite store: pools, bots and their desired state.

All access goes through one worker thread, so every operation is serialized and
each multi-row change is one transaction (BEGIN IMMEDIATE ... COMMIT). A file
that cannot be opened, is not a database, fails its integrity check or has a
newer schema raises StoreError; it is never replaced by an empty store.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, TypeVar

import structlog

from common.states import RunState
from controller.errors import CapacityExhausted, Conflict, NotFound, StoreError
from controller.events import Event
from controller.models import BotRecord, BotSecrets, PoolRecord
from controller.restarts import RestartRecord

log = structlog.get_logger("controller.store")
SCHEMA_VERSION = 6
T = TypeVar("T")

_SCHEMA_V1 = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE pools (
    id TEXT PRIMARY KEY,
    num INTEGER NOT NULL UNIQUE,
    port_start INTEGER NOT NULL,
    capacity INTEGER NOT NULL,
    owner TEXT,
    used INTEGER NOT NULL DEFAULT 0,
    generation INTEGER NOT NULL DEFAULT 1,
    token_hash TEXT NOT NULL,
    created_at REAL NOT NULL,
    emptied_at REAL
);
CREATE INDEX pools_free ON pools (owner, capacity, used);
CREATE TABLE bots (
    id TEXT PRIMARY KEY,
    user_id TEXT NOT NULL,
    pool_id TEXT NOT NULL REFERENCES pools (id),
    slot INTEGER NOT NULL,
    port INTEGER NOT NULL UNIQUE,
    strategy TEXT NOT NULL,
    strategy_source BLOB NOT NULL,
    config TEXT NOT NULL,
    secrets TEXT NOT NULL,
    run TEXT NOT NULL CHECK (run IN ('running', 'stopped')),
    nonce INTEGER NOT NULL DEFAULT 0,
    deleting INTEGER NOT NULL DEFAULT 0,
    purge INTEGER NOT NULL DEFAULT 0,
    created_at REAL NOT NULL,
    UNIQUE (pool_id, slot)
);
CREATE INDEX bots_user ON bots (user_id);
CREATE INDEX bots_pool ON bots (pool_id);
"""
# A pool's own launch mode (NULL: the controller's BOT_LAUNCH) and its preloader's restart
# nonce, which the operator raises to restart the preloader once.
_SCHEMA_V2 = """
ALTER TABLE pools ADD COLUMN launch TEXT CHECK (launch IN ('preload', 'exec'));
ALTER TABLE pools ADD COLUMN preloader_nonce INTEGER NOT NULL DEFAULT 0;
"""
# Health and recovery events (controller/events.py), a bounded history: ids only grow, so
# clients resume a stream after the last id they saw.
_SCHEMA_V3 = """
CREATE TABLE events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    ts REAL NOT NULL,
    type TEXT NOT NULL,
    pool_id TEXT,
    bot_id TEXT,
    user_id TEXT,
    reason TEXT NOT NULL DEFAULT '',
    detail TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX events_user ON events (user_id, id);
"""
# Each bot's automatic restart record (controller/restarts.py), kept across restarts of
# the controller so a crash-looping bot cannot earn fresh attempts by outliving it.
_SCHEMA_V4 = """
ALTER TABLE bots ADD COLUMN restart_attempts INTEGER NOT NULL DEFAULT 0;
ALTER TABLE bots ADD COLUMN restart_cycles INTEGER NOT NULL DEFAULT 0;
ALTER TABLE bots ADD COLUMN restart_last REAL NOT NULL DEFAULT 0;
ALTER TABLE bots ADD COLUMN failed INTEGER NOT NULL DEFAULT 0;
"""
# Legacy mode and migration: a legacy pool runs one bot in a container named after it
# (legacy_of: that bot's id), and a held bot is being moved between pools: its agents
# neither run it nor touch its directory until the move is done.
_SCHEMA_V5 = """
ALTER TABLE pools ADD COLUMN legacy_of TEXT;
ALTER TABLE bots ADD COLUMN held INTEGER NOT NULL DEFAULT 0;
CREATE UNIQUE INDEX pools_legacy ON pools (legacy_of) WHERE legacy_of IS NOT NULL;
"""
# A pool being removed: it holds no bot and takes none, and keeps its number (so its port
# block, its name) until its runtime is gone, which may take a while (STOP_TIMEOUT).
_SCHEMA_V6 = """
ALTER TABLE pools ADD COLUMN removing INTEGER NOT NULL DEFAULT 0;
"""
_MIGRATIONS: dict[int, str] = {
    1: _SCHEMA_V1, 2: _SCHEMA_V2, 3: _SCHEMA_V3, 4: _SCHEMA_V4, 5: _SCHEMA_V5, 6: _SCHEMA_V6,
}  # fmt: skip


@dataclass(frozen=True, slots=True)
class Placement:
    """How allocation chooses a pool."""

    max_bots: int
    base_port: int
    pooled: bool = True
    per_user: bool = False
    fill: bool = True


@dataclass(frozen=True, slots=True)
class NewBot:
    id: str
    user_id: str
    strategy: str
    strategy_source: bytes
    config: dict[str, Any]
    secrets: BotSecrets


def _pool(row: sqlite3.Row) -> PoolRecord:
    return PoolRecord(
        id=row["id"], num=row["num"], port_start=row["port_start"], capacity=row["capacity"],
        owner=row["owner"], used=row["used"], generation=row["generation"],
        token_hash=row["token_hash"], created_at=row["created_at"], emptied_at=row["emptied_at"],
        launch=row["launch"], preloader_nonce=row["preloader_nonce"], legacy_of=row["legacy_of"],
        removing=bool(row["removing"]),
    )  # fmt: skip


def _bot(row: sqlite3.Row) -> BotRecord:
    return BotRecord(
        id=row["id"], user_id=row["user_id"], pool_id=row["pool_id"], slot=row["slot"],
        port=row["port"], strategy=row["strategy"], strategy_source=row["strategy_source"],
        config=json.loads(row["config"]), secrets=BotSecrets(**json.loads(row["secrets"])),
        run=RunState(row["run"]), nonce=row["nonce"], deleting=bool(row["deleting"]),
        purge=bool(row["purge"]), created_at=row["created_at"], held=bool(row["held"]),
        restarts=RestartRecord(row["restart_attempts"], row["restart_cycles"],
                               row["restart_last"], bool(row["failed"])),
    )  # fmt: skip


def _pool_row(db: sqlite3.Connection, pool_id: str) -> PoolRecord:
    return _pool(db.execute("SELECT * FROM pools WHERE id = ?", (pool_id,)).fetchone())


def _bot_row(db: sqlite3.Connection, bot_id: str) -> BotRecord:
    return _bot(db.execute("SELECT * FROM bots WHERE id = ?", (bot_id,)).fetchone())


def _set_columns(db: sqlite3.Connection, table: str, row_id: str, changes: dict[str, Any]) -> int:
    """UPDATE the named columns of one row (names checked by the callers); rows changed."""
    assignments = ", ".join(f"{k} = ?" for k in changes)
    sql = f"UPDATE {table} SET {assignments} WHERE id = ?"
    return db.execute(sql, (*changes.values(), row_id)).rowcount


def _roll_back(db: sqlite3.Connection) -> None:
    """Undo the open transaction, if any: after some errors (SQLITE_FULL, IOERR, NOMEM)
    SQLite has rolled it back by itself, and a ROLLBACK then would fail. A rollback that
    fails anyway is logged; it never takes the place of the error that called for it."""
    if not db.in_transaction:
        return
    try:
        db.execute("ROLLBACK")
    except sqlite3.Error as exc:
        log.error("store_rollback_failed", error=str(exc))


class Store:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="store")
        self._db: sqlite3.Connection | None = None

    # -- plumbing -----------------------------------------------------------------

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    @property
    def db(self) -> sqlite3.Connection:
        if self._db is None:
            raise StoreError("store is not open")
        return self._db

    def _tx(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        db = self.db
        db.execute("BEGIN IMMEDIATE")
        try:
            result = fn(db)
            db.execute("COMMIT")  # a failed COMMIT (busy, full) may leave it open
        except BaseException:
            _roll_back(db)
            raise
        return result

    def _rolled_back(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run fn in a transaction that is always rolled back: a what-if."""
        db = self.db
        db.execute("BEGIN IMMEDIATE")
        try:
            return fn(db)
        finally:
            _roll_back(db)

    async def open(self) -> None:
        await self._run(self._open)

    def _open(self) -> None:
        db: sqlite3.Connection | None = None
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            db.row_factory = sqlite3.Row
            db.execute("PRAGMA foreign_keys = ON")
            db.execute("PRAGMA busy_timeout = 5000")
            check = db.execute("PRAGMA quick_check").fetchone()[0]
            # Checked before switching to WAL, which would change someone else's database.
            foreign = check == "ok" and self._foreign(db)
            usable = check == "ok" and not foreign
            mode = db.execute("PRAGMA journal_mode = WAL").fetchone()[0] if usable else ""
        except (sqlite3.Error, OSError) as exc:
            if db is not None:
                db.close()
            raise StoreError(f"cannot open store {self.path}: {exc}") from None
        problem = None
        if check != "ok":
            problem = f"store {self.path} failed its integrity check: {check}"
        elif foreign:
            problem = f"{self.path} is a database of something else, not ftpool"
        elif mode.lower() != "wal":
            problem = f"store {self.path} cannot use WAL journaling (got {mode})"
        if problem is not None:
            db.close()
            raise StoreError(problem)
        self._db = db
        self._migrate()

    @staticmethod
    def _foreign(db: sqlite3.Connection) -> bool:
        """A database with tables but without ftpool's meta table."""
        tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        return bool(tables) and "meta" not in tables

    def _migrate(self) -> None:
        db = self.db
        has_meta = db.execute(
            "SELECT 1 FROM sqlite_master WHERE type='table' AND name='meta'"
        ).fetchone()
        if has_meta is None:
            tables = db.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]
            if tables:
                raise StoreError(f"{self.path} is a database of something else, not ftpool")
            version = 0
        else:
            row = db.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
            version = int(row[0]) if row else 0
        if version > SCHEMA_VERSION:
            raise StoreError(
                f"store schema {version} is newer than this controller ({SCHEMA_VERSION})"
            )
        for target in range(version + 1, SCHEMA_VERSION + 1):

            def step(db: sqlite3.Connection, target: int = target) -> None:
                for statement in _MIGRATIONS[target].split(";"):
                    if statement.strip():
                        db.execute(statement)
                db.execute(
                    "INSERT OR REPLACE INTO meta VALUES ('schema_version', ?)", (str(target),)
                )

            self._tx(step)

    async def close(self) -> None:
        def close() -> None:
            if self._db is not None:
                self._db.close()
                self._db = None

        await self._run(close)
        self._executor.shutdown(wait=True)

    # -- reads --------------------------------------------------------------------

    async def load(self) -> tuple[list[PoolRecord], list[BotRecord]]:
        def load() -> tuple[list[PoolRecord], list[BotRecord]]:
            try:
                pools = [_pool(r) for r in self.db.execute("SELECT * FROM pools ORDER BY num")]
                bots = [_bot(r) for r in self.db.execute("SELECT * FROM bots ORDER BY port")]
            except (sqlite3.Error, ValueError, TypeError, KeyError) as exc:
                raise StoreError(f"cannot read store {self.path}: {exc}") from None
            return pools, bots

        return await self._run(load)

    async def check_layout(self, max_bots: int, base_port: int) -> None:
        """Refuse to start when the port layout changed under existing pools."""

        def check(db: sqlite3.Connection) -> None:
            want = json.dumps({"max_bots": max_bots, "base_port": base_port})
            row = db.execute("SELECT value FROM meta WHERE key='layout'").fetchone()
            pools = db.execute("SELECT count(*) FROM pools").fetchone()[0]
            if row is not None and row[0] != want and pools:
                have = json.loads(row[0])
                raise StoreError(
                    "MAX_BOTS_PER_CONTAINER/POOL_BASE_PORT changed while pools exist "
                    f"(store has {have['max_bots']}/{have['base_port']}); "
                    "restore them or remove all pools first"
                )
            db.execute("INSERT OR REPLACE INTO meta VALUES ('layout', ?)", (want,))

        await self._run(self._tx, check)

    # -- allocation ---------------------------------------------------------------

    async def allocate(
        self, bot: NewBot, placement: Placement, token_hash: str, held: bool = False,
        run: RunState = RunState.RUNNING,
    ) -> tuple[BotRecord, PoolRecord, bool]:  # fmt: skip
        """Place a bot in a pool with a free slot, creating the pool row if none has one.

        Returns the bot, its pool, and whether the pool is new (so its runtime must be made).
        """
        return await self._run(
            self._tx, lambda db: self._allocate(db, bot, placement, token_hash, held, run)
        )

    def _allocate(
        self, db: sqlite3.Connection, bot: NewBot, p: Placement, token_hash: str, held: bool,
        run: RunState,
    ) -> tuple[BotRecord, PoolRecord, bool]:  # fmt: skip
        if db.execute("SELECT 1 FROM bots WHERE id = ?", (bot.id,)).fetchone():
            raise Conflict(f"bot {bot.id} already exists")
        pool, slot, created = self._place(db, bot.id, bot.user_id, p, token_hash)
        now = time.time()
        db.execute(
            "INSERT INTO bots (id, user_id, pool_id, slot, port, strategy, strategy_source,"
            " config, secrets, run, nonce, created_at, held)"
            " VALUES (?,?,?,?,?,?,?,?,?,?,0,?,?)",
            (
                bot.id, bot.user_id, pool.id, slot, pool.port_start + slot, bot.strategy,
                bot.strategy_source, json.dumps(bot.config),
                json.dumps({
                    "username": bot.secrets.username, "password": bot.secrets.password,
                    "jwt_secret": bot.secrets.jwt_secret, "ws_token": bot.secrets.ws_token,
                }),
                run, now, int(held),
            ),
        )  # fmt: skip
        return _bot_row(db, bot.id), pool, created

    def _place(
        self, db: sqlite3.Connection, bot_id: str, user_id: str, p: Placement, token_hash: str,
        avoid: str | None = None,
    ) -> tuple[PoolRecord, int, bool]:  # fmt: skip
        """Take a free slot in a pool (not `avoid`), made if none has one.

        Without pooling the slot is in the bot's own legacy pool. Returns the pool as it is
        with the slot taken, the slot, and whether it was made; the caller puts the bot in
        the slot within the same transaction.
        """
        if p.pooled:
            owner = user_id if p.per_user else None
            order = "used DESC, num" if p.fill else "used ASC, num"
            row = db.execute(
                f"SELECT * FROM pools WHERE owner IS ? AND capacity = ? AND used < capacity "
                f"AND legacy_of IS NULL AND removing = 0 AND id IS NOT ? ORDER BY {order} LIMIT 1",
                (owner, p.max_bots, avoid),
            ).fetchone()
        else:
            # A legacy pool serves its one bot only; an empty one left behind is taken again.
            owner = user_id
            row = db.execute("SELECT * FROM pools WHERE legacy_of = ?", (bot_id,)).fetchone()
            if row is not None and row["removing"]:
                # Its container, which has the name the new one would take, is still there.
                raise Conflict(f"the legacy container of {bot_id} is being removed; "
                               "try again shortly")  # fmt: skip
            if row is not None and row["used"] >= row["capacity"]:
                raise Conflict(f"bot {bot_id} is in its legacy container already")
        created = row is None
        if created:
            num = self._free_pool_number(db)
            port_start = p.base_port + (num - 1) * p.max_bots
            if port_start + p.max_bots - 1 > 65535:
                raise CapacityExhausted("no port block left for another pool")
            db.execute(
                "INSERT INTO pools (id, num, port_start, capacity, owner, used, generation,"
                " token_hash, created_at, legacy_of) VALUES (?, ?, ?, ?, ?, 0, 1, ?, ?, ?)",
                (f"pool-{num}", num, port_start, p.max_bots if p.pooled else 1, owner,
                 token_hash, time.time(), None if p.pooled else bot_id),
            )  # fmt: skip
            row = db.execute("SELECT * FROM pools WHERE num = ?", (num,)).fetchone()
        pool_id, capacity = row["id"], row["capacity"]
        taken = {r[0] for r in db.execute("SELECT slot FROM bots WHERE pool_id = ?", (pool_id,))}
        db.execute(
            "UPDATE pools SET used = used + 1, generation = generation + 1, emptied_at = NULL"
            " WHERE id = ?",
            (pool_id,),
        )
        slot = next(s for s in range(capacity) if s not in taken)
        return _pool_row(db, pool_id), slot, created

    async def relocate(
        self, bot_id: str, placement: Placement, token_hash: str, held: bool
    ) -> tuple[BotRecord, PoolRecord, bool, PoolRecord]:
        """Move one bot to a slot of another pool (its legacy pool, without pooling).

        Returns the bot, its new pool, whether that pool is new, and the old pool.
        """

        def relocate(db: sqlite3.Connection) -> tuple[BotRecord, PoolRecord, bool, PoolRecord]:
            row = db.execute("SELECT user_id, pool_id FROM bots WHERE id = ?", (bot_id,))
            user_id, old_pool = row.fetchone() or (None, None)
            if user_id is None:
                raise NotFound(f"bot {bot_id} is not in the store")
            pool, slot, created = self._place(db, bot_id, user_id, placement, token_hash,
                                              avoid=old_pool)  # fmt: skip
            db.execute(
                "UPDATE bots SET pool_id = ?, slot = ?, port = ?, held = ? WHERE id = ?",
                (pool.id, slot, pool.port_start + slot, int(held), bot_id),
            )
            self._release(db, old_pool)
            self._bump(db, old_pool)
            return _bot_row(db, bot_id), pool, created, _pool_row(db, old_pool)

        return await self._run(self._tx, relocate)

    async def plan(
        self, bots: list[tuple[str, str]], placement: Placement
    ) -> list[tuple[str, int, bool]]:
        """Where allocation would put each (bot id, user id), in order: pool id, port and
        whether the pool would be new. Nothing is written: the very allocation code runs
        in a transaction that is rolled back."""

        def plan(db: sqlite3.Connection) -> list[tuple[str, int, bool]]:
            out = []
            for n, (bot_id, user_id) in enumerate(bots):
                pool, slot, created = self._place(db, bot_id, user_id, placement, "")
                port = pool.port_start + slot
                # A stand-in row takes the slot, so the next bot is planned past it.
                db.execute(
                    "INSERT INTO bots (id, user_id, pool_id, slot, port, strategy,"
                    " strategy_source, config, secrets, run, created_at)"
                    " VALUES (?, ?, ?, ?, ?, '', x'', '{}', '{}', 'stopped', 0)",
                    (f"plan {n}", user_id, pool.id, slot, port),
                )
                out.append((pool.id, port, created))
            return out

        return await self._run(self._rolled_back, plan)

    @staticmethod
    def _release(db: sqlite3.Connection, pool_id: str) -> None:
        """One slot of the pool is free again (its bot was deleted or moved away)."""
        db.execute(
            "UPDATE pools SET used = used - 1,"
            " emptied_at = CASE WHEN used = 1 THEN ? ELSE NULL END WHERE id = ?",
            (time.time(), pool_id),
        )

    async def move_bots(
        self, from_pool: str, placement: Placement, token_hash: str
    ) -> tuple[list[tuple[BotRecord, PoolRecord, bool]], PoolRecord]:
        """Give every bot of a lost pool a slot in other pools, in one transaction.

        Returns each moved bot with its new pool and whether that pool is new, and the old
        pool: it keeps no bot, and counts as full, so nothing new is placed in it while it
        waits to be removed. A legacy pool's bot stays legacy, in a new pool of its own.
        """

        def move(
            db: sqlite3.Connection,
        ) -> tuple[list[tuple[BotRecord, PoolRecord, bool]], PoolRecord]:
            moved = []
            legacy = _pool_row(db, from_pool).legacy_of is not None
            p = replace(placement, pooled=False) if legacy else placement
            # It no longer stands for its legacy bot, whose new pool takes that place.
            db.execute(
                "UPDATE pools SET used = capacity, emptied_at = ?, generation = generation + 1,"
                " legacy_of = NULL WHERE id = ?",
                (time.time(), from_pool),
            )
            rows = db.execute(
                "SELECT id, user_id FROM bots WHERE pool_id = ? ORDER BY slot", (from_pool,)
            ).fetchall()
            for bot_id, user_id in rows:
                pool, slot, created = self._place(db, bot_id, user_id, p, token_hash, from_pool)
                db.execute(
                    "UPDATE bots SET pool_id = ?, slot = ?, port = ? WHERE id = ?",
                    (pool.id, slot, pool.port_start + slot, bot_id),
                )
                moved.append((_bot_row(db, bot_id), pool, created))
            return moved, _pool_row(db, from_pool)

        return await self._run(self._tx, move)

    @staticmethod
    def _free_pool_number(db: sqlite3.Connection) -> int:
        row = db.execute(
            "SELECT CASE WHEN NOT EXISTS (SELECT 1 FROM pools WHERE num = 1) THEN 1 ELSE"
            " (SELECT min(p.num + 1) FROM pools p WHERE NOT EXISTS"
            "  (SELECT 1 FROM pools q WHERE q.num = p.num + 1)) END"
        ).fetchone()
        return int(row[0])

    # -- desired-state changes (each bumps the pool's generation) -------------------

    async def update_bot(
        self, bot_id: str, restarts: RestartRecord | None = None, **changes: Any
    ) -> tuple[BotRecord, int]:
        """Change run/nonce/deleting/purge/held and the restart record of a bot; returns it and
        its pool's new generation."""
        allowed = {"run", "nonce", "deleting", "purge", "held"}
        if not set(changes) <= allowed or not (changes or restarts):
            raise ValueError(f"can only change {allowed} and restarts")
        if restarts is not None:
            changes.update(
                restart_attempts=restarts.attempts, restart_cycles=restarts.cycles,
                restart_last=restarts.last, failed=int(restarts.failed),
            )  # fmt: skip

        def change(db: sqlite3.Connection) -> tuple[BotRecord, int]:
            _set_columns(db, "bots", bot_id, changes)
            bot = _bot_row(db, bot_id)
            gen = self._bump(db, bot.pool_id)
            return bot, gen

        return await self._run(self._tx, change)

    async def remove_bot(self, bot_id: str) -> PoolRecord:
        """Forget a deleted bot once its agent confirmed it gone; its slot is free again."""

        def remove(db: sqlite3.Connection) -> PoolRecord:
            row = db.execute("SELECT pool_id FROM bots WHERE id = ?", (bot_id,)).fetchone()
            if row is None:
                raise NotFound(f"bot {bot_id} is not in the store")
            db.execute("DELETE FROM bots WHERE id = ?", (bot_id,))
            self._release(db, row[0])
            return _pool_row(db, row[0])

        return await self._run(self._tx, remove)

    async def set_pool_token(self, pool_id: str, token_hash: str) -> None:
        def update(db: sqlite3.Connection) -> None:
            db.execute("UPDATE pools SET token_hash = ? WHERE id = ?", (token_hash, pool_id))

        await self._run(self._tx, update)

    async def update_pool(self, pool_id: str, **changes: Any) -> PoolRecord:
        """Change a pool's launch mode or preloader nonce; returns it with its new generation."""
        allowed = {"launch", "preloader_nonce"}
        if not changes or not set(changes) <= allowed:
            raise ValueError(f"can only change {allowed}")

        def change(db: sqlite3.Connection) -> PoolRecord:
            if not _set_columns(db, "pools", pool_id, changes):
                raise NotFound(f"pool {pool_id} does not exist")
            self._bump(db, pool_id)
            return _pool_row(db, pool_id)

        return await self._run(self._tx, change)

    async def retire_pool(self, pool_id: str) -> PoolRecord | None:
        """Mark an empty pool as being removed (it takes no bot from now on; its row, and
        with it its number, stays until remove_pool); None if it has a bot."""

        def retire(db: sqlite3.Connection) -> PoolRecord | None:
            if db.execute("SELECT 1 FROM bots WHERE pool_id = ?", (pool_id,)).fetchone():
                return None
            if not db.execute("UPDATE pools SET removing = 1 WHERE id = ?", (pool_id,)).rowcount:
                return None
            return _pool_row(db, pool_id)

        return await self._run(self._tx, retire)

    async def remove_pool(self, pool_id: str) -> bool:
        """Delete an empty pool's row; False if it gained a bot meanwhile."""

        def remove(db: sqlite3.Connection) -> bool:
            if db.execute("SELECT 1 FROM bots WHERE pool_id = ?", (pool_id,)).fetchone():
                return False
            db.execute("DELETE FROM pools WHERE id = ?", (pool_id,))
            return True

        return await self._run(self._tx, remove)

    @staticmethod
    def _bump(db: sqlite3.Connection, pool_id: str) -> int:
        db.execute("UPDATE pools SET generation = generation + 1 WHERE id = ?", (pool_id,))
        return db.execute("SELECT generation FROM pools WHERE id = ?", (pool_id,)).fetchone()[0]

    # -- events -------------------------------------------------------------------------

    async def add_events(self, events: list[Event], keep: int) -> list[int]:
        """Store events in one transaction and keep only the last `keep`; returns their ids."""

        def add(db: sqlite3.Connection) -> list[int]:
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

        return await self._run(self._tx, add) if events else []

    async def events(self, limit: int, since_id: int | None, user_id: str | None) -> list[Event]:
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

        def read() -> list[Event]:
            rows = self.db.execute(
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

        return await self._run(read)
