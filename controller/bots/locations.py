"""The seed's BotContainerMapper: for any bot, pooled or legacy, where it runs and how to
reach it. ftpool's own bots (in pools or in legacy containers of their own) come from
the controller's records; legacy containers ftpool never provisioned are discovered.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from common.ids import check_id
from controller.auth import Principal
from controller.errors import NotFound
from controller.pools.manager import PoolManager
from controller.runtimes.legacy import DISCOVERY_MAX_AGE, LegacyBot, LegacyContainers


@dataclass(frozen=True, slots=True)
class BotLocation:
    instance_id: str
    user_id: str
    mode: str  # pooled or legacy
    managed: bool  # False: a discovered legacy container, until it is migrated
    pool_id: str | None
    container: str
    host: str
    port: int | None

    def to_json(self) -> dict[str, Any]:
        connection = None
        if self.port is not None:
            url = f"http://{self.host}:{self.port}"
            connection = {"host": self.host, "port": self.port, "url": url}
        return {
            "instanceId": self.instance_id, "userId": self.user_id,
            "isPooled": self.mode == "pooled", "mode": self.mode, "managed": self.managed,
            "poolId": self.pool_id, "containerName": self.container, "connection": connection,
        }  # fmt: skip


class BotContainerMapper:
    def __init__(self, pools: PoolManager, legacy: LegacyContainers | None) -> None:
        self.pools = pools
        self.legacy = legacy  # None: no Docker runtime, so no legacy containers to find

    async def legacy_bots(self) -> dict[str, LegacyBot]:
        """Legacy containers ftpool does not manage (a listing up to a few seconds old:
        views must not cost a Docker listing each)."""
        if self.legacy is None:
            return {}
        found = await self.legacy.discover(DISCOVERY_MAX_AGE)
        return {k: v for k, v in found.items() if k not in self.pools.registry.bots}

    async def resolve(self, principal: Principal, instance_id: str) -> BotLocation:
        check_id(instance_id, "instanceId")
        bot = self.pools.registry.bots.get(instance_id)
        if bot is not None:
            principal.require_owner(bot.user_id)
            pool = self.pools.registry.pools[bot.pool_id]
            return BotLocation(
                instance_id=bot.id, user_id=bot.user_id,
                mode="legacy" if pool.legacy_of == bot.id else "pooled", managed=True,
                pool_id=pool.id, container=pool.container_name,
                host=self.pools.runtime.display_host(pool.id), port=bot.port,
            )  # fmt: skip
        found = (await self.legacy_bots()).get(instance_id)
        if found is None:
            raise NotFound(f"bot {instance_id} not found")
        principal.require_owner(found.user_id)
        return BotLocation(
            instance_id=found.id, user_id=found.user_id, mode="legacy", managed=False,
            pool_id=None, container=found.container, host=found.container, port=found.port,
        )  # fmt: skip
