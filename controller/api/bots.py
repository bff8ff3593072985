"""/api/bots: provision, list, inspect, start, stop, restart and delete bots."""

from __future__ import annotations

from aiohttp import web

from controller.api.middleware import principal, read_json
from controller.api.spec import (
    ANY_OBJECT,
    BOOL,
    ID,
    INT,
    STR,
    TRUE,
    USER,
    Operations,
    answer,
    json_body,
    obj,
    op,
    query,
    ref,
)  # fmt: skip
from controller.api.views import bot_view
from controller.backups.service import BackupService
from controller.bots.limits import MAX_BOT_CPU, MIN_BOT_CPU
from controller.bots.manager import BotManager, ProvisionRequest
from controller.health.status import bot_status_word

_PROVISION = op(
    "provision a bot",
    security=USER,
    tags=("bots",),
    errors=(409, 502, 503, 507),
    description="Without instanceId one is generated. config is merged over safe defaults; "
    "keys ftpool manages are refused (400). limits: memory (a size) and cpu (CPUs, 0.01 to "
    "1024); a user may ask up to BOT_MEMORY_LIMIT / BOT_CPU_LIMIT, and within their quotas "
    "(403), the admin for any.",
    body=json_body(
        {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "instanceId": ID,
                "strategy": STR,
                "config": ANY_OBJECT,
                "limits": {
                    "anyOf": [
                        {"type": "null"},
                        {
                            "type": "object",
                            "additionalProperties": False,
                            "properties": {
                                "memory": {
                                    "anyOf": [
                                        {"type": "null"},
                                        {"type": "string"},
                                        {"type": "integer"},
                                    ]
                                },
                                "cpu": {
                                    "anyOf": [
                                        {"type": "null"},
                                        {
                                            "type": "number",
                                            "minimum": MIN_BOT_CPU,
                                            "maximum": MAX_BOT_CPU,
                                        },
                                    ]
                                },
                            },
                        },
                    ]
                },
            },
        }
    ),
    ok={
        201: answer(
            obj(
                {
                    "success": TRUE,
                    "instanceId": ID,
                    "poolId": ID,
                    "port": INT,
                    "status": STR,
                }
            ),
            "provisioned",
        )
    },
)
_LIFECYCLE = answer(obj({
    "success": TRUE, "instanceId": ID, "action": {"enum": ["start", "stop", "restart"]},
    "desired": {"enum": ["running", "stopped"]}, "status": STR,
}))  # fmt: skip
_DELETED = obj({
    "success": TRUE, "instanceId": ID, "status": {"enum": ["deleted", "deleting"]},
    "archived": BOOL,
})  # fmt: skip
_ONE_BOT = {"errors": (400, 403, 404), "security": USER, "tags": ("bots",)}
OPERATIONS: Operations = {
    ("POST", "/api/bots"): _PROVISION,
    ("POST", "/api/provision-enhanced"): {**_PROVISION, "summary": "provision a bot (alias)"},
    ("GET", "/api/bots"): op(
        "your bots (admin: all)", security=USER, tags=("bots",),
        ok={200: answer(obj({"success": TRUE, "bots": {"type": "array", "items": ref("Bot")}}))},
    ),
    ("GET", "/api/bots/{instanceId}"): op(
        "one bot", ok={200: answer({"allOf": [ref("Bot"), obj({"success": TRUE})]})}, **_ONE_BOT,
    ),
    ("DELETE", "/api/bots/{instanceId}"): op(
        "remove the bot; its directory is archived, or deleted with purge=true",
        params=(query("purge", {"enum": ["true", "false", "1", "0"]}, "delete its files"),),
        ok={200: answer(_DELETED, "deleted"), 202: answer(_DELETED, "its agent has not confirmed")},
        **{**_ONE_BOT, "errors": (400, 403, 404, 409)},
    ),
    **{
        ("POST", f"/api/bots/{{instanceId}}/{verb}"): op(
            f"{verb} the bot's process", ok={200: _LIFECYCLE},
            **{**_ONE_BOT, "errors": (400, 403, 404, 409, 502)},
        )
        for verb in ("start", "stop", "restart")
    },
}  # fmt: skip


class APIBots:
    operations = OPERATIONS

    def __init__(self, bots: BotManager, backups: BackupService | None = None) -> None:
        self.bots = bots
        self.backups = backups  # told of purges: a purged bot's backups go too
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
        req = ProvisionRequest.from_json(await read_json(request, empty={}))
        bot = await self.bots.provision(principal(request), req)
        return web.json_response(
            {
                "success": True,
                "instanceId": bot.id,
                "poolId": bot.pool_id,
                "port": bot.port,
                "status": bot_status_word(self.pools, bot),
                "limits": {
                    "memoryBytes": self.bots.memory_limit(bot) or None,
                    "cpu": self.bots.limits.cpu_of(bot) or None,
                },
            },
            status=201,
        )

    async def list(self, request: web.Request) -> web.Response:
        bots = self.bots.visible(principal(request))
        views = [bot_view(self.pools, b, self.bots.limits) for b in bots]
        return web.json_response({"success": True, "bots": views})

    async def info(self, request: web.Request) -> web.Response:
        bot = self.bots.get(principal(request), request.match_info["instanceId"])
        view = bot_view(self.pools, bot, self.bots.limits)
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
        if purge and self.backups is not None:
            self.backups.purge(bot.id)
        return web.json_response(
            {
                "success": True,
                "instanceId": bot.id,
                "status": "deleted" if done else "deleting",
                "archived": not purge,
            },
            status=200 if done else 202,
        )
