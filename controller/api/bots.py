"""/api/bots: provision, list, inspect, start, stop, restart and delete bots."""

from __future__ import annotations

from aiohttp import web

from controller.api.middleware import principal, read_json
from controller.api.views import bot_view
from controller.bots.manager import BotManager, ProvisionRequest
from controller.health.status import bot_status_word


class APIBots:
    def __init__(self, bots: BotManager) -> None:
        self.bots = bots
        self.pools = bots.pools

    def routes(self) -> list[web.RouteDef]:
        return [
            web.post("/api/bots", self.provision),
            web.post("/api/provision-enhanced", self.provision),
            web.get("/api/bots", self.list),
            web.get("/api/bots/{instanceId}", self.info),
            web.delete("/api/bots/{instanceId}", self.delete),
            # Lifecycle verbs take precedence over the proxy's /api/bots/{id}/<path>.
            web.post("/api/bots/{instanceId}/start", self.start),
            web.post("/api/bots/{instanceId}/stop", self.stop),
            web.post("/api/bots/{instanceId}/restart", self.restart),
        ]

    async def provision(self, request: web.Request) -> web.Response:
        req = ProvisionRequest.from_json(await read_json(request))
        bot = await self.bots.provision(principal(request), req)
        return web.json_response(
            {
                "success": True,
                "instanceId": bot.id,
                "poolId": bot.pool_id,
                "port": bot.port,
                "status": bot_status_word(self.pools, bot),
                "limits": {"memoryBytes": self.bots.memory_limit(bot) or None},
            },
            status=201,
        )

    async def list(self, request: web.Request) -> web.Response:
        bots = self.bots.visible(principal(request))
        views = [bot_view(self.pools, b, self.bots.memory_limit(b)) for b in bots]
        return web.json_response({"success": True, "bots": views})

    async def info(self, request: web.Request) -> web.Response:
        bot = self.bots.get(principal(request), request.match_info["instanceId"])
        view = bot_view(self.pools, bot, self.bots.memory_limit(bot))
        return web.json_response({"success": True, **view})

    async def _lifecycle(self, request: web.Request, action: str) -> web.Response:
        bot = self.bots.get(principal(request), request.match_info["instanceId"])
        bot = await getattr(self.bots, action)(bot)
        return web.json_response(
            {
                "success": True,
                "instanceId": bot.id,
                "action": action,
                "desired": bot.run,
                "status": bot_status_word(self.pools, bot),
            }
        )

    async def start(self, request: web.Request) -> web.Response:
        return await self._lifecycle(request, "start")

    async def stop(self, request: web.Request) -> web.Response:
        return await self._lifecycle(request, "stop")

    async def restart(self, request: web.Request) -> web.Response:
        return await self._lifecycle(request, "restart")

    async def delete(self, request: web.Request) -> web.Response:
        bot = self.bots.get(principal(request), request.match_info["instanceId"])
        purge_raw = request.query.get("purge", "false").lower()
        if purge_raw not in ("true", "false", "1", "0"):
            raise web.HTTPBadRequest(reason="purge must be true or false")
        purge = purge_raw in ("true", "1")
        done = await self.bots.delete(bot, purge)
        return web.json_response(
            {
                "success": True,
                "instanceId": bot.id,
                "status": "deleted" if done else "deleting",
                "archived": not purge,
            },
            status=200 if done else 202,
        )
