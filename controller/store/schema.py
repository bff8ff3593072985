"""The store's schema, and opening a store file: each schema version's migration, run in
order on a file that is older; a file that is not ftpool's, is damaged or is newer than
this controller raises StoreError and is never changed."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from controller.errors import StoreError
from controller.store.sql import in_transaction

SCHEMA_VERSION = 15

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
# Each bot's automatic restart record (controller/health/restarts.py), kept across
# restarts of the controller so a crash-looping bot cannot earn fresh attempts by
# outliving it.
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
# A pool being drained: its bots are being moved out (a lost pool's evacuation), so it
# takes no new bot; one that keeps a bot's files it could not hand over stays so, empty.
_SCHEMA_V7 = """
ALTER TABLE pools ADD COLUMN draining INTEGER NOT NULL DEFAULT 0;
"""
# Rolling upgrades of the pool image (controller/upgrade/): each run as one JSON document,
# rewritten after every step of every pool, so a controller that died mid-run finds where
# each pool was at its next start.
_SCHEMA_V8 = """
CREATE TABLE upgrades (
    id TEXT PRIMARY KEY,
    started_at REAL NOT NULL,
    finished INTEGER NOT NULL DEFAULT 0,
    doc TEXT NOT NULL
);
"""
# Limits (docs/limits.md): a user's own bot quota set by the admin (none: USER_MAX_BOTS), a
# bot's own memory limit in bytes (NULL: the default, BOT_MEMORY_LIMIT), and how many of a
# bot's automatic restarts in its restart record were for its memory.
_SCHEMA_V9 = """
CREATE TABLE user_quotas (
    user_id TEXT PRIMARY KEY,
    max_bots INTEGER NOT NULL CHECK (max_bots >= 0)
);
ALTER TABLE bots ADD COLUMN memory_limit INTEGER CHECK (memory_limit >= 0);
ALTER TABLE bots ADD COLUMN restart_memory INTEGER NOT NULL DEFAULT 0;
"""
# Dashboard sessions signed out (controller/ui/session.py), until they would have expired:
# a copied cookie of one stays refused after a controller restart.
_SCHEMA_V10 = """
CREATE TABLE ui_signed_out (
    sid TEXT PRIMARY KEY,
    expires REAL NOT NULL
);
"""
# A pool's own market-data proxy switch (docs/market-data.md; NULL: MARKET_DATA_PROXY's).
_SCHEMA_V11 = """
ALTER TABLE pools ADD COLUMN market_data INTEGER CHECK (market_data IN (0, 1));
"""
# A user's memory budget set by the admin (docs/limits.md): the sum of their bots' memory
# limits may not pass it (no row: no budget).
_SCHEMA_V12 = """
CREATE TABLE user_memory_budgets (
    user_id TEXT PRIMARY KEY,
    max_memory INTEGER NOT NULL CHECK (max_memory > 0)
);
"""
# A pool abandoned on a lost node (controller/moves/failover.py): its failover is taken up
# again after a restart, never the pool recreated or a bot landed in it; the mark goes with
# the pool's row, so a later pool with its number is a pool like any other.
_SCHEMA_V13 = """
ALTER TABLE pools ADD COLUMN abandoned INTEGER NOT NULL DEFAULT 0;
"""
# CPU limits (docs/limits.md): a bot's own in thousandths of a CPU (NULL: the default,
# BOT_CPU_LIMIT), and a user's own CPU quota set by the admin, the sum their bots' limits
# may reach (no row: USER_MAX_CPU; 0: none for that user).
_SCHEMA_V14 = """
ALTER TABLE bots ADD COLUMN cpu_millis INTEGER CHECK (cpu_millis > 0);
CREATE TABLE user_cpu_quotas (
    user_id TEXT PRIMARY KEY,
    max_cpu_millis INTEGER NOT NULL CHECK (max_cpu_millis >= 0)
);
"""
# Each bot's pool history (controller/store/history.py): which pools it lived in, from when
# until when (NULL: it lives there now), written with each allocation, relocation and
# deletion; only restore points a pool wrote while the bot lived there are the bot's
# (controller/backups/points.py accepted). A store from before has no history: each bot is
# taken to have lived in its current pool since it was made (docs/backups.md).
_SCHEMA_V15 = """
CREATE TABLE bot_pools (
    bot_id TEXT NOT NULL,
    pool_id TEXT NOT NULL,
    since REAL NOT NULL,
    until REAL,
    CHECK (until IS NULL OR until >= since)
);
CREATE INDEX bot_pools_bot ON bot_pools (bot_id, since);
CREATE UNIQUE INDEX bot_pools_current ON bot_pools (bot_id) WHERE until IS NULL;
INSERT INTO bot_pools (bot_id, pool_id, since) SELECT id, pool_id, created_at FROM bots;
"""
_MIGRATIONS: dict[int, str] = {
    1: _SCHEMA_V1, 2: _SCHEMA_V2, 3: _SCHEMA_V3, 4: _SCHEMA_V4, 5: _SCHEMA_V5, 6: _SCHEMA_V6,
    7: _SCHEMA_V7, 8: _SCHEMA_V8, 9: _SCHEMA_V9, 10: _SCHEMA_V10, 11: _SCHEMA_V11,
    12: _SCHEMA_V12, 13: _SCHEMA_V13, 14: _SCHEMA_V14, 15: _SCHEMA_V15,
}  # fmt: skip


def open_database(path: Path) -> sqlite3.Connection:
    """Open the store file (made if absent), checked and migrated to SCHEMA_VERSION."""
    db: sqlite3.Connection | None = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        db.row_factory = sqlite3.Row
        db.execute("PRAGMA foreign_keys = ON")
        db.execute("PRAGMA busy_timeout = 5000")
        check = db.execute("PRAGMA quick_check").fetchone()[0]
        # Checked before switching to WAL, which would change someone else's database.
        foreign = check == "ok" and _foreign(db)
        usable = check == "ok" and not foreign
        mode = db.execute("PRAGMA journal_mode = WAL").fetchone()[0] if usable else ""
    except (sqlite3.Error, OSError) as exc:
        if db is not None:
            db.close()
        raise StoreError(f"cannot open store {path}: {exc}") from None
    problem = None
    if check != "ok":
        problem = f"store {path} failed its integrity check: {check}"
    elif foreign:
        problem = f"{path} is a database of something else, not ftpool"
    elif mode.lower() != "wal":
        problem = f"store {path} cannot use WAL journaling (got {mode})"
    if problem is not None:
        db.close()
        raise StoreError(problem)
    try:
        _migrate(db, path)
    except BaseException:
        db.close()
        raise
    return db


def _foreign(db: sqlite3.Connection) -> bool:
    """A database with tables but without ftpool's meta table."""
    tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    return bool(tables) and "meta" not in tables


def _migrate(db: sqlite3.Connection, path: Path) -> None:
    has_meta = db.execute(
        "SELECT 1 FROM sqlite_master WHERE type='table' AND name='meta'"
    ).fetchone()
    if has_meta is None:
        tables = db.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]
        if tables:
            raise StoreError(f"{path} is a database of something else, not ftpool")
        version = 0
    else:
        row = db.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
        version = int(row[0]) if row else 0
    if version > SCHEMA_VERSION:
        raise StoreError(f"store schema {version} is newer than this controller ({SCHEMA_VERSION})")
    for target in range(version + 1, SCHEMA_VERSION + 1):

        def step(db: sqlite3.Connection, target: int = target) -> None:
            for statement in _MIGRATIONS[target].split(";"):
                if statement.strip():
                    db.execute(statement)
            db.execute("INSERT OR REPLACE INTO meta VALUES ('schema_version', ?)", (str(target),))

        in_transaction(db, step)
