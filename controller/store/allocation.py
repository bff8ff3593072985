"""Allocation: which pool and slot (and so which port) a bot gets, in one transaction.

Pool N owns the port block [base + (N-1)·max, base + N·max); slot s of it is port
block start + s. Freed slots and pool numbers are taken again. Each function here runs
inside the store's transaction (controller/store/store.py), so two allocations never
share a slot or a port.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

from common.settings import ControllerSettings
from common.states import RunState
from controller.errors import BadRequest, CapacityExhausted, Conflict, NotFound
from controller.records import BotSecrets, PoolRecord
from controller.store import history
from controller.store.change import Change
from controller.store.quotas import (
    Quotas,
    check_cpu_quota,
    check_memory_budget,
    check_quota,
    millis,
)
from controller.store.sql import bot_row, bump, pool_row, release


@dataclass(frozen=True, slots=True)
class Placement:
    """How allocation chooses a pool."""

    max_bots: int
    base_port: int
    pooled: bool = True
    per_user: bool = False
    fill: bool = True
    # A pool's memory (POOL_MEMORY_LIMIT; 0: none) and a bot's memory limit unless it has
    # its own: with both, a pool takes a bot only while its bots' limits fit its memory.
    pool_memory: int = 0
    bot_memory: int = 0
    bot_cpu: float = 0.0  # BOT_CPU_LIMIT: a bot's CPUs unless it has its own (0: none)

    @classmethod
    def from_settings(cls, settings: ControllerSettings) -> Placement:
        return cls(
            max_bots=settings.max_bots_per_container, base_port=settings.pool_base_port,
            pooled=settings.pool_mode_enabled, per_user=settings.pool_tenancy == "per-user",
            fill=settings.placement == "fill", pool_memory=settings.pool_memory_bytes,
            bot_memory=settings.default_bot_memory, bot_cpu=settings.bot_cpu_limit,
        )  # fmt: skip

    def need(self, memory_limit: int | None) -> int:
        """The memory a bot with this own limit (None: the default) takes of its pool's."""
        return self.bot_memory if memory_limit is None else memory_limit


@dataclass(frozen=True, slots=True)
class NewBot:
    id: str
    user_id: str
    strategy: str
    strategy_source: bytes
    config: dict[str, Any]
    secrets: BotSecrets
    memory_limit: int | None = None  # bytes; None: the default
    cpu_limit: float | None = None  # CPUs; None: the default


def allocate(
    db: sqlite3.Connection, bot: NewBot, p: Placement, token_hash: str, held: bool,
    run: RunState, quota: Quotas | None = None,
) -> Change:  # fmt: skip
    """Place a new bot in a pool with a free slot, made if none has one.

    With `quota` (the defaults: USER_MAX_BOTS, USER_MAX_CPU) the user's bots are counted,
    and their memory and CPU limits summed, in the same transaction, so concurrent
    provisions cannot pass a quota together (controller/store/quotas.py); a user's own
    quotas take the defaults' place."""
    if db.execute("SELECT 1 FROM bots WHERE id = ?", (bot.id,)).fetchone():
        raise Conflict(f"bot {bot.id} already exists")
    need = p.need(bot.memory_limit)
    cpu = None if bot.cpu_limit is None else millis(bot.cpu_limit)
    if quota is not None:
        check_quota(db, bot.user_id, quota.max_bots)
        check_memory_budget(db, bot.user_id, need, p.bot_memory)
        cpu_need = millis(p.bot_cpu) if cpu is None else cpu
        check_cpu_quota(db, bot.user_id, cpu_need, millis(p.bot_cpu), millis(quota.max_cpu))
    pool, slot, created = place(db, bot.id, bot.user_id, p, token_hash, need=need)
    now = time.time()
    db.execute(
        "INSERT INTO bots (id, user_id, pool_id, slot, port, strategy, strategy_source,"
        " config, secrets, run, nonce, created_at, held, memory_limit, cpu_millis)"
        " VALUES (?,?,?,?,?,?,?,?,?,?,0,?,?,?,?)",
        (
            bot.id, bot.user_id, pool.id, slot, pool.port_start + slot, bot.strategy,
            bot.strategy_source, json.dumps(bot.config),
            json.dumps({
                "username": bot.secrets.username, "password": bot.secrets.password,
                "jwt_secret": bot.secrets.jwt_secret, "ws_token": bot.secrets.ws_token,
            }),
            run, now, int(held), bot.memory_limit, cpu,
        ),
    )  # fmt: skip
    history.arrive(db, bot.id, pool.id, now)
    return Change(pools=(pool,), bots=(bot_row(db, bot.id),),
                  created=frozenset({pool.id} if created else ()))  # fmt: skip


# A candidate pool's bots' memory limits, summed over the bots_pool index (at most
# MAX_BOTS_PER_CONTAINER rows), and only for pools that have a free slot.
_FITS = (
    " AND (SELECT coalesce(sum(coalesce(b.memory_limit, :default)), 0) FROM bots b"
    " WHERE b.pool_id = pools.id) + :need <= :pool_memory"
)


def place(
    db: sqlite3.Connection, bot_id: str, user_id: str, p: Placement, token_hash: str,
    avoid: Collection[str] = (), need: int = 0, into: str | None = None,
) -> tuple[PoolRecord, int, bool]:  # fmt: skip
    """Take a free slot in a pool (none of `avoid`) whose memory fits the bot's `need` as well
    (with a pool memory limit), made if none has one; with `into`, a slot of that pool
    (draining or not: an upgrade fills a pool kept from placement), or Conflict.

    Without pooling the slot is in the bot's own legacy pool. Returns the pool as it is
    with the slot taken, the slot, and whether it was made; the caller puts the bot in
    the slot within the same transaction.
    """
    if into is not None:
        row = db.execute(
            "SELECT * FROM pools WHERE id = ? AND used < capacity AND removing = 0"
            " AND legacy_of IS NULL", (into,),
        ).fetchone()  # fmt: skip
        if row is None:
            raise Conflict(f"pool {into} has no free slot for bot {bot_id}")
    elif p.pooled:
        owner = user_id if p.per_user else None
        order = "used DESC, num" if p.fill else "used ASC, num"
        fits = _FITS if p.pool_memory else ""
        if p.pool_memory and need > p.pool_memory:
            raise BadRequest(
                f"bot {bot_id}'s memory limit ({need} bytes) is larger than a pool's memory "
                f"({p.pool_memory} bytes, POOL_MEMORY_LIMIT)"
            )
        avoided = {f"avoid{n}": pool_id for n, pool_id in enumerate(sorted(avoid))}
        excluded = f" AND id NOT IN ({', '.join(':' + k for k in avoided)})" if avoided else ""
        row = db.execute(
            f"SELECT * FROM pools WHERE owner IS :owner AND capacity = :capacity"
            f" AND used < capacity AND legacy_of IS NULL AND removing = 0 AND draining = 0"
            f"{excluded}{fits} ORDER BY {order} LIMIT 1",
            {"owner": owner, "capacity": p.max_bots, "default": p.bot_memory,
             "need": need, "pool_memory": p.pool_memory, **avoided},
        ).fetchone()  # fmt: skip
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
        num = _free_pool_number(db)
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
    return pool_row(db, pool_id), slot, created


def relocate(
    db: sqlite3.Connection, bot_id: str, p: Placement, token_hash: str, held: bool,
    into: str | None = None, avoid: Collection[str] = (),
) -> Change:  # fmt: skip
    """Move one bot to a slot of another pool (its legacy pool, without pooling; `into`:
    that pool; never one of `avoid`, nor its own): the change holds the bot, its old pool
    and its new one (made if it is in `created`).

    A legacy pool's bot that leaves its draining (lost) pool for a legacy pool again gets
    a new one, which stands for the bot from now on: the old one stands for nobody."""
    row = db.execute(
        "SELECT b.user_id, b.pool_id, p.legacy_of, p.draining, b.memory_limit FROM bots b"
        " JOIN pools p ON p.id = b.pool_id WHERE b.id = ?",
        (bot_id,),
    ).fetchone()
    if row is None:
        raise NotFound(f"bot {bot_id} is not in the store")
    user_id, old_pool, legacy_of, draining, memory_limit = row
    if not p.pooled and legacy_of == bot_id and draining:
        db.execute("UPDATE pools SET legacy_of = NULL WHERE id = ?", (old_pool,))
    pool, slot, created = place(db, bot_id, user_id, p, token_hash, avoid={old_pool, *avoid},
                                need=p.need(memory_limit), into=into)  # fmt: skip
    db.execute(
        "UPDATE bots SET pool_id = ?, slot = ?, port = ?, held = ? WHERE id = ?",
        (pool.id, slot, pool.port_start + slot, int(held), bot_id),
    )
    history.arrive(db, bot_id, pool.id, time.time())
    release(db, old_pool)
    bump(db, old_pool)
    return Change(pools=(pool_row(db, old_pool), pool), bots=(bot_row(db, bot_id),),
                  created=frozenset({pool.id} if created else ()))  # fmt: skip


def new_pool(
    db: sqlite3.Connection, p: Placement, token_hash: str, owner: str | None, capacity: int,
    launch: str | None = None, market_data: bool | None = None,
) -> Change:  # fmt: skip
    """An empty pool with its own port block (the lowest free pool number), draining: no
    placement puts a bot in it; only a move `into` it does (an upgrade's fresh pool, which
    keeps the old pool's own launch mode and market-data switch)."""
    num = _free_pool_number(db)
    port_start = p.base_port + (num - 1) * p.max_bots
    if port_start + p.max_bots - 1 > 65535 or capacity > p.max_bots:
        raise CapacityExhausted("no port block left for another pool")
    db.execute(
        "INSERT INTO pools (id, num, port_start, capacity, owner, used, generation,"
        " token_hash, created_at, draining, launch, market_data)"
        " VALUES (?, ?, ?, ?, ?, 0, 1, ?, ?, 1, ?, ?)",
        (f"pool-{num}", num, port_start, capacity, owner, token_hash, time.time(), launch,
         None if market_data is None else int(market_data)),
    )  # fmt: skip
    pool_id = db.execute("SELECT id FROM pools WHERE num = ?", (num,)).fetchone()[0]
    return Change(pools=(pool_row(db, pool_id),), created=frozenset({pool_id}))


def plan(
    db: sqlite3.Connection, bots: list[tuple[str, str]], p: Placement
) -> list[tuple[str, int, bool]]:
    """Where allocation would put each (bot id, user id), in order: pool id, port and
    whether the pool would be new. Run in a transaction that is rolled back."""
    out = []
    for n, (bot_id, user_id) in enumerate(bots):
        pool, slot, created = place(db, bot_id, user_id, p, "", need=p.need(None))
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


def _free_pool_number(db: sqlite3.Connection) -> int:
    row = db.execute(
        "SELECT CASE WHEN NOT EXISTS (SELECT 1 FROM pools WHERE num = 1) THEN 1 ELSE"
        " (SELECT min(p.num + 1) FROM pools p WHERE NOT EXISTS"
        "  (SELECT 1 FROM pools q WHERE q.num = p.num + 1)) END"
    ).fetchone()
    return int(row[0])
