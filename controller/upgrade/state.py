"""An upgrade run as it is kept in the store (schema 8, table `upgrades`): one JSON
document per run, rewritten after every step of every pool, so a controller that dies
mid-run finds at its next start where each pool was (controller/upgrade/recovery.py)."""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from controller.upgrade.plan import PENDING


@dataclass(slots=True)
class PoolUpgrade:
    """One pool's part of a run."""

    pool: str
    from_ref: str
    from_id: str
    bots: int
    canary: bool = False
    method: str = "recreate"  # or "move" (controller/upgrade/plan.py METHODS)
    to_pool: str = ""  # `move`: the fresh pool its bots move into
    step: str = PENDING
    reason: str = ""
    started_at: float | None = None
    finished_at: float | None = None
    # From stopping its old container until its last bot answered on the new image.
    downtime_s: float | None = None
    bot_downtime_s: dict[str, float] = field(default_factory=dict)  # to its first answer


@dataclass(slots=True)
class UpgradeRun:
    id: str
    to_ref: str
    to_id: str
    options: dict[str, Any] = field(default_factory=dict)  # as asked (canary, soak, ...)
    started_at: float = field(default_factory=time.time)
    finished_at: float | None = None
    outcome: str = "in_progress"  # upgraded, rolled_back, canary_failed, failed, interrupted
    reason: str = ""
    pools: list[PoolUpgrade] = field(default_factory=list)

    @property
    def finished(self) -> bool:
        return self.finished_at is not None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    def dump(self) -> str:
        return json.dumps(self.to_json())

    @classmethod
    def load(cls, doc: str) -> UpgradeRun:
        """A run as saved; fields this version does not know are dropped."""
        raw = json.loads(doc)
        known = {f.name for f in fields(PoolUpgrade)}
        pools = [PoolUpgrade(**{k: v for k, v in p.items() if k in known}) for p in raw["pools"]]
        mine = {f.name for f in fields(cls)} - {"pools"}
        return cls(**{k: v for k, v in raw.items() if k in mine}, pools=pools)
