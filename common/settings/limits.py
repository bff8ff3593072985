"""Limits on bots: memory, CPU, bots per user, and the memory saving's yardstick."""

from __future__ import annotations

from typing import Any

from common.settings.parsing import MS, choice, integer, setting, size

# docs/benchmarks.md, "Memory: pooled vs. one container per bot": one legacy container
# with one dry-run trading bot (20 pairs, 2,000 markets), `docker stats` after 5 minutes.
MEASURED_LEGACY_CONTAINER = "273m"


NO_BOT_MEMORY_LIMIT = -1  # BOT_MEMORY_LIMIT=off: none, even with a pool limit


def size_or_off(raw: str) -> int:
    """A size such as 512m, empty (0: the default), or `off` (none at all)."""
    return NO_BOT_MEMORY_LIMIT if raw.strip().lower() == "off" else size(raw)


def bot_memory_limit() -> Any:
    return setting(
        "BOT_MEMORY_LIMIT", size_or_off, "",
        "each bot's own memory (USS) limit, e.g. 512m; default POOL_MEMORY_LIMIT / "
        "MAX_BOTS_PER_CONTAINER when that is set, else none; off: none (only the kernel "
        "acts, at the pool's limit)",
    )  # fmt: skip


def bot_memory_grace_ms() -> Any:
    return setting(
        "BOT_MEMORY_GRACE", MS, "30000",
        "how long a bot may stay over its memory limit before it is restarted",
    )  # fmt: skip


def bot_busy_cpu() -> Any:
    return setting(
        "BOT_BUSY_CPU", integer(0, 10_000), "90",
        "percent of BOT_BUSY_WINDOW a bot may run or wait to run before it is deprioritised "
        "(0: off)",
    )  # fmt: skip


def bot_busy_policy() -> Any:
    return setting(
        "BOT_BUSY_POLICY", choice("idle", "nice"), "idle",
        "a busy bot's threads: SCHED_IDLE and nice 19 (idle), or nice 19 alone (nice)",
    )  # fmt: skip


def bot_busy_window_ms() -> Any:
    return setting("BOT_BUSY_WINDOW", MS, "30000", "the window a bot's CPU demand is judged over")


def cpu_cores(raw: str) -> float:
    """A number of CPUs such as 0.5 (0 or empty: none)."""
    value = float(raw.strip() or "0")
    if not 0 <= value <= 1024:
        raise ValueError("must be a number of CPUs from 0 to 1024")
    return value


def bot_cpu_limit() -> Any:
    return setting(
        "BOT_CPU_LIMIT", cpu_cores, "0",
        "CPUs each bot may use, e.g. 0.5, where bots have cgroups of their own "
        "(POOL_CGROUPS; 0: no cap, an equal share)",
    )  # fmt: skip


def user_max_cpu() -> Any:
    return setting(
        "USER_MAX_CPU", cpu_cores, "0",
        "CPUs the limits of one user's bots may add up to, e.g. 2 (0: no quota); the admin "
        "API sets a user's own",
    )  # fmt: skip


def user_max_bots() -> Any:
    return setting(
        "USER_MAX_BOTS", integer(0, 1_000_000), "0",
        "bots one user may have (0: no limit); the admin API sets a user's own",
    )  # fmt: skip


def legacy_container_memory() -> Any:
    return setting(
        "LEGACY_CONTAINER_MEMORY", size, MEASURED_LEGACY_CONTAINER,
        "one bot in a container of its own, against which pooling's saving is estimated",
    )  # fmt: skip
