"""/healthz: liveness and readiness of the controller itself, for load balancers."""

from __future__ import annotations

from aiohttp import web

from common import __version__
from controller.api.middleware import public
from controller.api.spec import INT, PUBLIC, STR, Operations, answer, obj, op
from controller.pools.manager import PoolManager


class APIHealthz:
    operations: Operations = {
        ("GET", "/healthz"): op(
            "liveness and readiness, for load balancers", security=PUBLIC, tags=("health",),
            ok={200: answer(obj({
                "status": {"const": "ok"}, "version": STR, "pools": INT,
                "agentsConnected": INT, "bots": INT,
            }))},
        ),
    }  # fmt: skip

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
