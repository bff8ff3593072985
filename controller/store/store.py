"""The SQLite store: pools, bots and their desired state, and the events table.

Every write returns the Change it made (controller/store/change.py).

All access goes through one worker thread, so every operation is serialized and
each multi-row change is one transaction (BEGIN IMMEDIATE ... COMMIT). A file
that cannot be opened, is not a database, fails its integrity check or has a
newer schema raises StoreError; it is never replaced by an empty store.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import Callable, Collection
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from common.states import RunState
from controller.errors import NotFound, StoreError
from controller.records import BotRecord, Event, PoolRecord, RestartRecord, Stay
from controller.store import allocation, history, quotas
from controller.store.allocation import NewBot, Placement
from controller.store.change import Change
from controller.store.events import add_events, read_events
from controller.store.quotas import Quotas
from controller.store.schema import open_database
from controller.store.sql import (
    bot_of,
    bot_row,
    bump,
    in_transaction,
    pool_of,
    pool_row,
    release,
    rolled_back,
    set_columns,
)

T = TypeVar("T")
KEEP_UPGRADES = 20  # upgrade runs kept; the oldest go first


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
        return in_transaction(self.db, fn)

    async def _write(self, fn: Callable[..., T], *args: Any) -> T:
        """fn(db, *args) in one transaction, on the store's thread."""
        return await self._run(self._tx, lambda db: fn(db, *args))

    async def open(self) -> None:
        def open_() -> None:
            self._db = open_database(self.path)

        await self._run(open_)

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
                pools = [pool_of(r) for r in self.db.execute("SELECT * FROM pools ORDER BY num")]
                bots = [bot_of(r) for r in self.db.execute("SELECT * FROM bots ORDER BY port")]
            except (sqlite3.Error, ValueError, TypeError, KeyError) as exc:
                raise StoreError(f"cannot read store {self.path}: {exc}") from None
            return pools, bots

        return await self._run(load)

    async def stays(self, bot_id: str) -> list[Stay]:
        """The pools the bot lived in, and when (controller/store/history.py), oldest first."""
        return await self._run(lambda: history.stays(self.db, bot_id))

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

    # -- allocation (controller/store/allocation.py) --------------------------------

    async def allocate(
        self, bot: NewBot, placement: Placement, token_hash: str, held: bool = False,
        run: RunState = RunState.RUNNING, quota: Quotas | None = None,
    ) -> Change:  # fmt: skip
        """Place a bot in a pool with a free slot, creating the pool row if none has one
        (then it is in the change's `created`: its runtime must be made). With `quota`
        (the defaults of a user's quotas) the user's quotas are checked first."""
        return await self._write(allocation.allocate, bot, placement, token_hash, held, run, quota)

    async def user_quota(self, user_id: str, default: int) -> tuple[int, int | None, int]:
        """A user's quota of bots (0: none), their own (None: the default), their bots."""
        return await self._run(lambda: quotas.user_quota(self.db, user_id, default))

    async def set_user_quota(self, user_id: str, max_bots: int | None) -> None:
        """Give a user their own quota of bots (0: none), or the default again (None).
        Bots they have beyond a lowered quota stay; they cannot add any."""

        def write(db: sqlite3.Connection) -> None:
            if max_bots is None:
                db.execute("DELETE FROM user_quotas WHERE user_id = ?", (user_id,))
            else:
                db.execute("INSERT OR REPLACE INTO user_quotas VALUES (?, ?)", (user_id, max_bots))

        await self._run(self._tx, write)

    async def user_memory(self, user_id: str, default: int) -> tuple[int | None, int]:
        """A user's memory budget (None: none) and the sum of their bots' memory limits."""
        return await self._run(lambda: quotas.user_memory(self.db, user_id, default))

    async def set_user_memory_budget(self, user_id: str, max_memory: int | None) -> None:
        """Give a user a memory budget in bytes, or none (None). Bots beyond a lowered
        budget stay; they cannot add any that would pass it."""

        def write(db: sqlite3.Connection) -> None:
            if max_memory is None:
                db.execute("DELETE FROM user_memory_budgets WHERE user_id = ?", (user_id,))
            else:
                db.execute("INSERT OR REPLACE INTO user_memory_budgets VALUES (?, ?)",
                           (user_id, max_memory))  # fmt: skip

        await self._run(self._tx, write)

    async def user_cpu(
        self, user_id: str, default_bot: float, default_user: float
    ) -> tuple[float, float | None, float]:
        """A user's CPU quota (0: none), their own (None: the default) and the sum of their
        bots' CPU limits, in CPUs."""
        limit, own, used = await self._run(lambda: quotas.user_cpu(
            self.db, user_id, quotas.millis(default_bot), quotas.millis(default_user)))  # fmt: skip
        return limit / 1000, None if own is None else own / 1000, used / 1000

    async def set_user_cpu_quota(self, user_id: str, max_cpu: float | None) -> None:
        """Give a user their own CPU quota (0: none), or the default again (None). Bots
        beyond a lowered quota stay; they cannot add any that would pass it."""

        def write(db: sqlite3.Connection) -> None:
            if max_cpu is None:
                db.execute("DELETE FROM user_cpu_quotas WHERE user_id = ?", (user_id,))
            else:
                db.execute("INSERT OR REPLACE INTO user_cpu_quotas VALUES (?, ?)",
                           (user_id, quotas.millis(max_cpu)))  # fmt: skip

        await self._run(self._tx, write)

    async def relocate(
        self, bot_id: str, placement: Placement, token_hash: str, held: bool,
        into: str | None = None, avoid: Collection[str] = (),
    ) -> Change:  # fmt: skip
        """Move one bot to a slot of another pool (its legacy pool, without pooling;
        `into`: that pool; never one of `avoid`)."""
        return await self._write(allocation.relocate, bot_id, placement, token_hash, held, into,
                                 avoid)  # fmt: skip

    async def new_pool(
        self, placement: Placement, token_hash: str, owner: str | None, capacity: int,
        launch: str | None = None, market_data: bool | None = None,
    ) -> Change:  # fmt: skip
        """An empty pool, draining, with its own port block: an upgrade's fresh pool."""
        return await self._write(allocation.new_pool, placement, token_hash, owner, capacity,
                                 launch, market_data)  # fmt: skip

    async def plan(
        self, bots: list[tuple[str, str]], placement: Placement
    ) -> list[tuple[str, int, bool]]:
        """Where allocation would put each (bot id, user id), in order: pool id, port and
        whether the pool would be new. Nothing is written: the very allocation code runs
        in a transaction that is rolled back."""

        def what_if(db: sqlite3.Connection) -> list[tuple[str, int, bool]]:
            return allocation.plan(db, bots, placement)

        return await self._run(lambda: rolled_back(self.db, what_if))

    # -- desired-state changes (each bumps the pool's generation) -------------------

    async def update_bot(
        self, bot_id: str, restarts: RestartRecord | None = None, **changes: Any
    ) -> Change:
        """Change run/nonce/deleting/purge/held and the restart record of a bot; the change
        holds it and its pool, with its new generation."""
        allowed = {"run", "nonce", "deleting", "purge", "held"}
        if not set(changes) <= allowed or not (changes or restarts):
            raise ValueError(f"can only change {allowed} and restarts")
        if restarts is not None:
            changes.update(
                restart_attempts=restarts.attempts, restart_cycles=restarts.cycles,
                restart_last=restarts.last, failed=int(restarts.failed),
                restart_memory=restarts.memory,
            )  # fmt: skip

        def change(db: sqlite3.Connection) -> Change:
            set_columns(db, "bots", bot_id, changes)
            bot = bot_row(db, bot_id)
            bump(db, bot.pool_id)
            return Change(pools=(pool_row(db, bot.pool_id),), bots=(bot,))

        return await self._run(self._tx, change)

    async def remove_bot(self, bot_id: str) -> Change:
        """Forget a bot (deleted, and confirmed gone; or its import undone): its slot is free
        again, and its pool's desired state moves on without it."""

        def remove(db: sqlite3.Connection) -> Change:
            row = db.execute("SELECT pool_id FROM bots WHERE id = ?", (bot_id,)).fetchone()
            if row is None:
                raise NotFound(f"bot {bot_id} is not in the store")
            db.execute("DELETE FROM bots WHERE id = ?", (bot_id,))
            history.forget(db, bot_id)
            release(db, row[0])
            bump(db, row[0])
            return Change(pools=(pool_row(db, row[0]),), removed_bots=(bot_id,))

        return await self._run(self._tx, remove)

    async def set_pool_token(self, pool_id: str, token_hash: str) -> Change:
        """A pool's new token (its runtime is made anew); no change if it is not stored."""

        def update(db: sqlite3.Connection) -> Change:
            sql = "UPDATE pools SET token_hash = ? WHERE id = ?"
            if not db.execute(sql, (token_hash, pool_id)).rowcount:
                return Change()
            return Change(pools=(pool_row(db, pool_id),))

        return await self._run(self._tx, update)

    async def update_pool(self, pool_id: str, **changes: Any) -> Change:
        """Change a pool's launch mode, preloader nonce or market-data switch (its
        generation goes up)."""
        allowed = {"launch", "preloader_nonce", "market_data"}
        if not changes or not set(changes) <= allowed:
            raise ValueError(f"can only change {allowed}")

        def change(db: sqlite3.Connection) -> Change:
            if not set_columns(db, "pools", pool_id, changes):
                raise NotFound(f"pool {pool_id} does not exist")
            bump(db, pool_id)
            return Change(pools=(pool_row(db, pool_id),))

        return await self._run(self._tx, change)

    async def set_draining(self, pool_id: str, draining: bool) -> Change:
        """Mark a pool draining (its bots are being moved out: it takes no new bot), or not
        any more. Its desired state is the same: its generation stays."""

        def change(db: sqlite3.Connection) -> Change:
            if not set_columns(db, "pools", pool_id, {"draining": int(draining)}):
                raise NotFound(f"pool {pool_id} does not exist")
            return Change(pools=(pool_row(db, pool_id),))

        return await self._run(self._tx, change)

    async def abandon_pool(self, pool_id: str, token_hash: str) -> Change:
        """A pool left on a lost node (a failover): abandoned and draining, its agent's
        token replaced (a returning agent is refused) and every bot of it held, in one
        write; its generation goes up."""

        def change(db: sqlite3.Connection) -> Change:
            columns = {"abandoned": 1, "draining": 1, "token_hash": token_hash}
            if not set_columns(db, "pools", pool_id, columns):
                raise NotFound(f"pool {pool_id} does not exist")
            db.execute("UPDATE bots SET held = 1 WHERE pool_id = ?", (pool_id,))
            bump(db, pool_id)
            rows = db.execute("SELECT * FROM bots WHERE pool_id = ?", (pool_id,)).fetchall()
            return Change(pools=(pool_row(db, pool_id),), bots=tuple(bot_of(r) for r in rows))

        return await self._run(self._tx, change)

    async def retire_pool(self, pool_id: str) -> Change:
        """Mark an empty pool as being removed (it takes no bot from now on; its row, and
        with it its number, stays until remove_pool); no change if it has a bot."""

        def retire(db: sqlite3.Connection) -> Change:
            if db.execute("SELECT 1 FROM bots WHERE pool_id = ?", (pool_id,)).fetchone():
                return Change()
            if not db.execute("UPDATE pools SET removing = 1 WHERE id = ?", (pool_id,)).rowcount:
                return Change()
            return Change(retired_pools=(pool_row(db, pool_id),))

        return await self._run(self._tx, retire)

    async def remove_pool(self, pool_id: str) -> Change:
        """Delete an empty pool's row; no change if it gained a bot meanwhile."""

        def remove(db: sqlite3.Connection) -> Change:
            if db.execute("SELECT 1 FROM bots WHERE pool_id = ?", (pool_id,)).fetchone():
                return Change()
            db.execute("DELETE FROM pools WHERE id = ?", (pool_id,))
            return Change(removed_pools=(pool_id,))

        return await self._run(self._tx, remove)

    # -- events (controller/store/events.py) ----------------------------------------

    async def add_events(self, events: list[Event], keep: int) -> list[int]:
        """Store events in one transaction and keep only the last `keep`; returns their ids."""
        return await self._write(add_events, events, keep) if events else []

    async def events(self, limit: int, since_id: int | None, user_id: str | None) -> list[Event]:
        """Oldest first: the first `limit` events after `since_id`, or else the last `limit`.

        user_id None reads everyone's; a user's are those of their own bots.
        """
        return await self._run(lambda: read_events(self.db, limit, since_id, user_id))

    # -- rolling upgrades (controller/upgrade/) ---------------------------------------

    async def save_upgrade(self, run_id: str, started_at: float, finished: bool, doc: str) -> None:
        """Write an upgrade run's document whole; the runs past the last KEEP_UPGRADES go."""

        def save(db: sqlite3.Connection) -> None:
            db.execute("INSERT OR REPLACE INTO upgrades VALUES (?, ?, ?, ?)",
                       (run_id, started_at, int(finished), doc))  # fmt: skip
            db.execute("DELETE FROM upgrades WHERE id NOT IN (SELECT id FROM upgrades"
                       " ORDER BY started_at DESC LIMIT ?)", (KEEP_UPGRADES,))  # fmt: skip

        await self._write(save)

    async def upgrades(self) -> list[str]:
        """Every kept upgrade run's document, oldest first."""

        def read() -> list[str]:
            rows = self.db.execute("SELECT doc FROM upgrades ORDER BY started_at").fetchall()
            return [r[0] for r in rows]

        return await self._run(read)

    # -- dashboard sessions (controller/ui/session.py) ----------------------------------

    async def sign_out_session(self, sid: str, expires: float, now: float) -> None:
        """Keep a signed-out session's id until it would have expired; those past go."""

        def write(db: sqlite3.Connection) -> None:
            db.execute("INSERT OR REPLACE INTO ui_signed_out VALUES (?, ?)", (sid, expires))
            db.execute("DELETE FROM ui_signed_out WHERE expires <= ?", (now,))

        await self._run(self._tx, write)

    async def signed_out_sessions(self, now: float) -> dict[str, float]:
        """The signed-out sessions that have not expired yet: id -> expiry."""

        def read() -> dict[str, float]:
            rows = self.db.execute(
                "SELECT sid, expires FROM ui_signed_out WHERE expires > ?", (now,)
            ).fetchall()
            return {r[0]: r[1] for r in rows}

        return await self._run(read)
