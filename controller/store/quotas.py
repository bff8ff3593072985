"""A user's quotas (docs/limits.md): how many bots they may have, the memory and the CPUs
their bots' limits may add up to. Each check runs inside the allocation's transaction
(controller/store/allocation.py): one lookup by primary key and one count or sum over the
index of the user's bots, so provisions that arrive together cannot pass it together."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from dataclasses import dataclass

from controller.errors import QuotaExceeded


@dataclass(frozen=True, slots=True)
class Quotas:
    """A user's quotas unless the admin gave them their own (0: none)."""

    max_bots: int = 0  # USER_MAX_BOTS
    max_cpu: float = 0.0  # USER_MAX_CPU, in CPUs


@dataclass(frozen=True, slots=True)
class Sum:
    """A quota over the sum of a user's bots' limits, as its refusals say it."""

    name: str  # "memory budget"
    limit: str  # "memory": a bot needs a memory limit
    amount: str  # "bytes of memory limits"
    where: str  # where a bot's limit comes from
    show: Callable[[int], str]  # an amount in the refusal's words


def check_sum(
    user_id: str, what: Sum, used: int, need: int, limit: int, quota: dict[str, object]
) -> None:
    """Refuse a bot whose limit (`need`; 0: none) would take the sum of its user's bots'
    limits (`used`) past `limit`; with such a quota, a bot needs a limit."""
    if not need:
        raise QuotaExceeded(f"user {user_id} has a {what.name}: their bots need a "
                            f"{what.limit} limit ({what.where})", quota=quota)  # fmt: skip
    if used + need > limit:
        raise QuotaExceeded(
            f"user {user_id}'s bots have {what.show(used)} {what.amount}; {what.show(need)} "
            f"more would pass their {what.name.split()[-1]} of {what.show(limit)}",
            quota=quota,
        )


MEMORY_BUDGET = Sum("memory budget", "memory", "bytes of memory limits",
                    "limits.memory, or BOT_MEMORY_LIMIT", str)  # fmt: skip
CPU_QUOTA = Sum("CPU quota", "CPU", "CPUs of limits", "limits.cpu, or BOT_CPU_LIMIT",
                lambda millis: f"{millis / 1000:g}")  # fmt: skip


def millis(cpu: float) -> int:
    """CPUs in thousandths of a CPU, as the store keeps them (sums stay exact)."""
    return round(cpu * 1000)


def user_quota(db: sqlite3.Connection, user_id: str, default: int) -> tuple[int, int | None, int]:
    """A user's quota of bots (0: none), their own one if the admin set it (else None),
    and how many bots they have: one lookup by primary key, one count over an index."""
    row = db.execute("SELECT max_bots FROM user_quotas WHERE user_id = ?", (user_id,)).fetchone()
    own = None if row is None else int(row[0])
    count = db.execute("SELECT count(*) FROM bots WHERE user_id = ?", (user_id,)).fetchone()[0]
    return (default if own is None else own), own, count


def check_quota(db: sqlite3.Connection, user_id: str, default: int) -> None:
    limit, _own, count = user_quota(db, user_id, default)
    if limit and count >= limit:
        raise QuotaExceeded(
            f"user {user_id} has {count} bots, their quota is {limit}",
            quota={"maxBots": limit, "bots": count},
        )


def user_memory(db: sqlite3.Connection, user_id: str, default: int) -> tuple[int | None, int]:
    """A user's memory budget in bytes (None: none) and the sum of their bots' memory
    limits (each its own or `default`; a bot without either counts nothing): one lookup by
    primary key, one sum over the index of the user's bots."""
    row = db.execute(
        "SELECT max_memory FROM user_memory_budgets WHERE user_id = ?", (user_id,)
    ).fetchone()
    used = db.execute(
        "SELECT coalesce(sum(coalesce(memory_limit, ?)), 0) FROM bots WHERE user_id = ?",
        (default, user_id),
    ).fetchone()[0]
    return (None if row is None else int(row[0])), int(used)


def check_memory_budget(db: sqlite3.Connection, user_id: str, need: int, default: int) -> None:
    """Refuse a user's new bot whose memory limit (`need`; 0: none) would take the sum of
    their bots' limits past their budget; with a budget, a bot needs a limit."""
    budget, used = user_memory(db, user_id, default)
    if budget is not None:
        quota = {"maxMemoryBytes": budget, "memoryBytes": used, "needBytes": need}
        check_sum(user_id, MEMORY_BUDGET, used, need, budget, quota)


def user_cpu(
    db: sqlite3.Connection, user_id: str, default_bot: int, default_user: int
) -> tuple[int, int | None, int]:
    """In thousandths of a CPU: a user's CPU quota (their own, else `default_user`; 0:
    none), their own (None: the default), and the sum of their bots' CPU limits (each its
    own or `default_bot`; a bot without either counts nothing)."""
    row = db.execute(
        "SELECT max_cpu_millis FROM user_cpu_quotas WHERE user_id = ?", (user_id,)
    ).fetchone()
    own = None if row is None else int(row[0])
    used = db.execute(
        "SELECT coalesce(sum(coalesce(cpu_millis, ?)), 0) FROM bots WHERE user_id = ?",
        (default_bot, user_id),
    ).fetchone()[0]
    return (default_user if own is None else own), own, int(used)


def check_cpu_quota(
    db: sqlite3.Connection, user_id: str, need: int, default_bot: int, default_user: int
) -> None:
    """Refuse a user's new bot whose CPU limit (`need`, thousandths; 0: none) would take the
    sum of their bots' limits past their CPU quota; with a quota, a bot needs a limit."""
    limit, _own, used = user_cpu(db, user_id, default_bot, default_user)
    if limit:
        quota = {"maxCpu": limit / 1000, "cpu": used / 1000, "needCpu": need / 1000}
        check_sum(user_id, CPU_QUOTA, used, need, limit, quota)
