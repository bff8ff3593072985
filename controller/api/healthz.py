"""/healthz: liveness and readiness of the controller itself, for load balancers."""

from __future__ import annotations

from aiohttp import web

from common import __version__
from controller.api.middleware import public
from controller.pools.manager import PoolManager


class APIHealthz:
    def __init__(self, pools: PoolManager) -> None:
        self.pools = pools

    def routes(self) -> list[web.RouteDef]:
        return [web.get("/healthz", self.healthz)]

    @public
    async def healthz(self, _request: web.Request) -> web.Response:
        connected = sum(1 for live in self.pools.registry.live.values() if live.connected)
        return web.json_response(
            {
                "status": "ok",
                "version": __version__,
                "pools": len(self.pools.registry.pools),
                "agentsConnected": connected,
                "bots": len(self.pools.registry.bots),
            }
        )
