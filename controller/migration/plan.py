"""What there is to migrate: every legacy bot (ftpool's legacy pools and discovered
containers), every pooled bot whose legacy copy an interrupted run left behind, and
where allocation would put each; planning changes nothing."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from controller.errors import Conflict
from controller.migration.log import MigrationLog
from controller.pools.manager import PoolManager
from controller.runtimes.legacy import LegacyBot, LegacyContainers
from controller.store.allocation import Placement


@dataclass(frozen=True, slots=True)
class Candidate:
    id: str
    user_id: str
    source: str  # legacy-pool, legacy-container, or resume (its legacy copy is left over)
    container: str
    state: str
    pool_id: str | None = None


class MigrationPlanner:
    def __init__(
        self, pools: PoolManager, legacy: LegacyContainers | None, log: MigrationLog,
        to_pools: Placement,
    ) -> None:  # fmt: skip
        self.pools = pools
        self.registry = pools.registry
        self.legacy = legacy
        self.log = log
        self.to_pools = to_pools

    async def candidates(self) -> list[Candidate]:
        """Every legacy bot (ftpool's legacy pools and discovered containers), and every
        pooled bot whose legacy copy an interrupted run left behind (to resume)."""
        out = []
        found = await self.legacy.discover() if self.legacy is not None else {}
        left_pools = {p.legacy_of: p for p in self.registry.pools.values() if p.legacy_of}
        for bot in self.registry.bots.values():
            pool = self.registry.pools[bot.pool_id]
            if bot.deleting:
                continue
            if pool.legacy_of == bot.id:
                out.append(Candidate(bot.id, bot.user_id, "legacy-pool", pool.container_name,
                                     bot.run, pool.id))  # fmt: skip
                continue
            # Left over: an empty legacy pool of the bot, or (the run's own test) a legacy
            # container the bot was imported from.
            legacy = found.get(bot.id)
            left = left_pools[bot.id].container_name if bot.id in left_pools else (
                legacy.container if legacy is not None and self.imported(legacy) else None
            )  # fmt: skip
            if left is not None:
                out.append(Candidate(bot.id, bot.user_id, "resume", left, bot.run, pool.id))
        for legacy in found.values():
            if legacy.id not in self.registry.bots:
                out.append(Candidate(legacy.id, legacy.user_id, "legacy-container",
                                     legacy.container, legacy.state))  # fmt: skip
        return sorted(out, key=lambda c: (c.user_id, c.id))

    async def discovered(self, max_age: float = 0.0) -> dict[str, LegacyBot]:
        """Legacy containers ftpool does not manage (one of a bot it manages is a leftover)."""
        if self.legacy is None:
            return {}
        found = await self.legacy.discover(max_age)
        return {k: v for k, v in found.items() if k not in self.registry.bots}

    async def plan(self, bot_ids: set[str], users: set[str]) -> dict[str, Any]:
        """Which bot goes to which pool and port; changes nothing."""
        chosen = [
            c for c in await self.candidates()
            if (not bot_ids or c.id in bot_ids) and (not users or c.user_id in users)
        ]  # fmt: skip
        moving = [c for c in chosen if c.source != "resume"]
        slots = iter(await self.pools.store.plan([(c.id, c.user_id) for c in moving],
                                                 self.to_pools))  # fmt: skip
        plan = []
        for c in chosen:
            if c.source == "resume":  # it runs in its pool already; its legacy copy goes
                bot = self.registry.bots[c.id]
                pool_id, port, new = bot.pool_id, bot.port, False
            else:
                pool_id, port, new = next(slots)
            plan.append({
                "instanceId": c.id, "userId": c.user_id, "source": c.source,
                "container": c.container, "state": c.state, "fromPool": c.pool_id,
                "toPool": pool_id, "port": port, "newPool": new,
            })  # fmt: skip
        listed = {c.id for c in chosen}
        skipped = [{"instanceId": b, "reason": self._why_not(b)} for b in sorted(bot_ids - listed)]
        return {"bots": plan, "skipped": skipped}

    def _why_not(self, bot_id: str) -> str:
        bot = self.registry.bots.get(bot_id)
        if bot is None:
            return "no such legacy bot"
        return f"already in pool {bot.pool_id}"

    async def leftover_container(self, bot_id: str) -> str | None:
        if self.legacy is None:
            return None
        found = (await self.legacy.discover()).get(bot_id)
        if found is None or not self.imported(found):
            return None
        if found.state == "running":
            # Two copies of one bot: which one trades is for an operator to decide.
            raise Conflict(f"{found.container} runs while the bot runs in a pool; stop one")
        return found.container

    def imported(self, found: LegacyBot) -> bool:
        """Did a run of ours import this very container (same bot, same owner)?"""
        return any(r.bot == found.id and r.user == found.user_id and r.kind == "migrate"
                   and r.source_container == found.container and r.to_pool
                   for r in self.log.runs)  # fmt: skip
