"""What one store write did, as the store now has it.

Every write of the store returns its Change; only the pools' registry
(controller/pools/registry.py) applies it to the in-memory view, and it pushes to their
agents the pools whose desired state moved on (their generation went up). So memory never
lags the store, and no caller copies records into the view by hand.
"""

from __future__ import annotations

from dataclasses import dataclass

from controller.records import BotRecord, PoolRecord


@dataclass(frozen=True, slots=True)
class Change:
    pools: tuple[PoolRecord, ...] = ()  # pools written, as they are now
    bots: tuple[BotRecord, ...] = ()  # bots written, as they are now
    removed_bots: tuple[str, ...] = ()
    retired_pools: tuple[PoolRecord, ...] = ()  # marked removing: they leave the view
    removed_pools: tuple[str, ...] = ()  # gone from the store, their number free again
    created: frozenset[str] = frozenset()  # pools this write made: their runtime must be

    def bot(self, bot_id: str) -> BotRecord:
        return next(b for b in self.bots if b.id == bot_id)

    def pool(self, pool_id: str) -> PoolRecord:
        return next(p for p in self.pools if p.id == pool_id)

    def __bool__(self) -> bool:
        return bool(self.pools or self.bots or self.removed_bots or self.retired_pools
                    or self.removed_pools)  # fmt: skip
