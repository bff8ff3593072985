"""Deciding an upgrade, changing nothing: which pools move to the new image and in what
order (plan_upgrade), which are the canary, what a controller that died mid-run does with
each pool it left (recovery_action; move_recovery for the `move` method), the order a
pool's bots move in (move_order), and a run's outcome (run_outcome).

Pure functions over plain values, so each decision is tested without a pool.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from common.protocol import BotStatus
from common.states import STOPPED, ProcessState, RunState
from controller.records import BotRecord
from controller.runtimes.base import ImageInfo

# A pool's steps in an upgrade, in order; a failed one goes rolling_back -> rolled_back.
PENDING, STOPPING, REPLACING, VERIFYING = "pending", "stopping", "replacing", "verifying"
UPGRADED, ROLLING_BACK, ROLLED_BACK = "upgraded", "rolling_back", "rolled_back"
FAILED, NOT_STARTED = "failed", "not_started"  # rollback failed; run ended before it
# The `move` method's steps: a fresh pool on the new image is made, the bots move into it
# one at a time (a bot that fails goes back, rolling_back -> rolled_back), the old goes.
CREATING, MOVING = "creating", "moving"
# Steps in which the pool's container may be neither its old one nor a verified new one.
IN_FLIGHT = frozenset({STOPPING, REPLACING, VERIFYING, ROLLING_BACK})
MOVE_IN_FLIGHT = frozenset({CREATING, MOVING})
# How a pool gets the new image: its container recreated on the same bot directories, or
# its bots moved into a fresh pool (docs/operations.md "Rolling upgrades" compares them).
RECREATE, MOVE = "recreate", "move"
METHODS = (RECREATE, MOVE)
DEFAULT_METHOD = MOVE  # the smaller downtime per bot, measured: docs/benchmarks.md


@dataclass(frozen=True, slots=True)
class PoolView:
    """What the planner knows of one pool."""

    id: str
    image: ImageInfo | None  # None: its runtime does not run
    bots: frozenset[str] = frozenset()
    users: frozenset[str] = frozenset()
    busy: str = ""  # why it cannot be upgraded now (a move has its bots), else ""


@dataclass(frozen=True, slots=True)
class Selection:
    """Which pools to upgrade: those named, and those holding a named bot or user's bot;
    nothing named is every pool."""

    pools: frozenset[str] = frozenset()
    users: frozenset[str] = frozenset()
    bots: frozenset[str] = frozenset()

    def chooses(self, pool: PoolView) -> bool:
        if not (self.pools or self.users or self.bots):
            return True
        return pool.id in self.pools or bool(pool.users & self.users or pool.bots & self.bots)


@dataclass(frozen=True, slots=True)
class Plan:
    target: ImageInfo
    pools: list[PoolView] = field(default_factory=list)  # in the order they go
    canary: int = 0  # the first `canary` pools, soaked before the rest
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (pool id, why)

    def to_json(self) -> dict[str, object]:
        return {
            "image": self.target.to_json(),
            "pools": [{"poolId": p.id, "from": p.image.to_json() if p.image else None,
                       "bots": len(p.bots), "canary": n < self.canary}
                      for n, p in enumerate(self.pools)],
            "skipped": [{"poolId": pool, "reason": why} for pool, why in self.skipped],
        }  # fmt: skip


def plan_upgrade(
    pools: Iterable[PoolView], target: ImageInfo, selection: Selection, canary: int = 0
) -> Plan:
    """The pools to move to `target`, in the order given (pool number), the first `canary`
    of them the canary. A pool already on the target image, or whose runtime does not run
    (the monitor recreates it, on the configured image), is skipped."""
    chosen, skipped = [], []
    known = set()
    for pool in pools:
        known.add(pool.id)
        if not selection.chooses(pool):
            continue
        if pool.busy:
            skipped.append((pool.id, pool.busy))
        elif pool.image is None:
            skipped.append((pool.id, "its container does not run"))
        elif pool.image.id == target.id:
            skipped.append((pool.id, f"runs {target.ref} already"))
        else:
            chosen.append(pool)
    skipped += [(p, "no such pool") for p in sorted(selection.pools - known)]
    return Plan(target, chosen, min(canary, len(chosen)), skipped)


def unhealthy_bots(
    bots: Iterable[BotRecord], statuses: Mapping[str, BotStatus], connected: bool
) -> list[str]:
    """The bots of a pool that are not as their users want them, as its agent reports:
    a running bot runs and answers its ping; a stopped one is stopped."""
    out = []
    for bot in bots:
        status = statuses.get(bot.id) if connected else None
        if bot.run == RunState.STOPPED:
            ok = status is not None and status.state in STOPPED
        else:
            ok = status is not None and status.state == ProcessState.RUNNING and status.ping_ok
        if not ok:
            out.append(bot.id)
    return out


def recovery_action(step: str, image_now: ImageInfo | None, old: ImageInfo | None) -> str:
    """What a controller starting again does with a pool an interrupted run left at `step`:
    "keep" (done, or untouched, or its old container still runs), or "rollback" (recreate
    it from its old image: its new one was never verified)."""
    if step not in IN_FLIGHT:
        return "keep"
    if old is not None and image_now is not None and image_now.id == old.id:
        return "keep"  # stopped before its old container went: it is as it was
    return "rollback"


def pool_method(requested: str, legacy: bool) -> str:
    """How one pool is upgraded: as asked, but a legacy pool (one bot's own container,
    standing for that bot) is recreated in place: moving would make its bot a pooled one."""
    return RECREATE if legacy else requested


def move_order(bots: Iterable[BotRecord]) -> list[BotRecord]:
    """The order a pool's bots move in: stopped ones first (no one waits for them, and
    they prove the new pool takes a bot), then running ones by slot."""
    return sorted(bots, key=lambda b: (b.run != RunState.STOPPED, b.slot, b.id))


def move_recovery(step: str, old_bots: int, new_bots: int) -> tuple[str, str]:
    """What a controller starting again does with a pool an interrupted `move` left at
    `step`, once the moves' crash recovery has put every held bot in the pool the store
    has it in and released it there (controller/moves/recovery.py). Returns (action, the
    pool's step): "remove_old" (every bot is in the fresh pool: the emptied old pool
    goes), "remove_new" (none is: the fresh pool goes), "keep_both" (the bots are split
    between the two pools, each running; both take bots again), or "keep"."""
    if step not in MOVE_IN_FLIGHT:
        return "keep", step
    if old_bots == 0:
        return "remove_old", UPGRADED
    if new_bots == 0:
        return "remove_new", NOT_STARTED
    return "keep_both", FAILED


def run_outcome(steps: Iterable[str], canary_failed: bool) -> str:
    """A finished run's outcome from its pools' last steps."""
    steps = list(steps)
    if canary_failed:
        return "canary_failed"
    if FAILED in steps:
        return "failed"
    if ROLLED_BACK in steps:
        return "rolled_back"
    return "upgraded"
