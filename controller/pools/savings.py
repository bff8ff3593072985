"""What pooling saves against one container per bot: an estimate for /api/pool/status and
the dashboard (docs/dashboard.md, "Memory saved").

A pool's running bots would each take a container of their own in the seed's layout; such
a container's memory is the setting LEGACY_CONTAINER_MEMORY, by default the figure
docs/benchmarks.md measured for one legacy container running one trading bot
(common/settings/limits.py: MEASURED_LEGACY_CONTAINER). The saving is what those
containers would take minus what the pool takes now. A pool that is itself a legacy
container (mode `legacy`) saves nothing by definition and is left out.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class PoolMemory:
    """A pooled pool's memory now, and how many of its bots run."""

    running_bots: int
    used_bytes: int | None  # None: not measured yet


def pool_saving(pool: PoolMemory, legacy_bytes: int) -> int | None:
    """Bytes the pool saves against its running bots in containers of their own (negative:
    it costs more, as one bot alone in a pool does); None without a figure."""
    if pool.used_bytes is None or not legacy_bytes:
        return None
    return pool.running_bots * legacy_bytes - pool.used_bytes


def fleet_saving(pools: list[PoolMemory], legacy_bytes: int) -> dict[str, int | float | None]:
    """The pools' saving together, over those with a figure, for the status's summary."""
    measured = [p for p in pools if pool_saving(p, legacy_bytes) is not None]
    running = sum(p.running_bots for p in measured)
    used = sum(p.used_bytes or 0 for p in measured)
    legacy = running * legacy_bytes
    return {
        "legacyContainerBytes": legacy_bytes,
        "runningBots": running,
        "poolsBytes": used if measured else None,
        "legacyBytes": legacy if measured else None,
        "savedBytes": legacy - used if measured else None,
        "savedPercent": round(100 * (legacy - used) / legacy, 1) if legacy else None,
    }
