"""/api/pool/bot/{instanceId}: where a bot runs (pooled or legacy, managed or only
discovered), as the seed's BotContainerMapper answers it, with its limits and what it uses
against them, the tail of its log, and its memory and CPU over the last hour."""

from __future__ import annotations

from aiohttp import web

from controller.api.middleware import principal
from controller.api.spec import STR, USER, Operations, answer, op, query, ref
from controller.api.views import limits_view
from controller.bots.locations import BotContainerMapper
from controller.bots.manager import BotManager
from controller.bots.usage import UsageHistory
from controller.errors import BotUnavailable

LOG_TAIL_DEFAULT = 16384


class APIPoolBot:
    operations: Operations = {
        ("GET", "/api/pool/bot/{instanceId}"): op(
            "where the bot runs (pooled or legacy, managed or only discovered); a managed "
            "bot's limits, its use against them and its busy state (as in GET /api/bots)",
            security=USER, errors=(400, 403, 404), tags=("bots",),
            ok={200: answer(ref("BotLocation"))},
        ),
        ("GET", "/api/pool/bot/{instanceId}/log"): op(
            "the tail of the bot's process log", security=USER, tags=("bots",),
            errors=(400, 403, 404, 503),
            params=(query("bytes", {"type": "integer", "minimum": 1, "maximum": 1048576},
                          f"how much of the end (default {LOG_TAIL_DEFAULT})"),),
            ok={200: answer({"type": "string"}, "the log's last bytes", "text/plain")},
        ),
        ("GET", "/api/pool/bot/{instanceId}/usage"): op(
            "the bot's memory and CPU over the last hour, one sample every 30 s (kept by the "
            "controller, not across its restarts)", security=USER, tags=("bots",),
            errors=(400, 403, 404),
            ok={200: answer({"type": "object", "required": ["success", "instanceId", "samples"],
                             "properties": {"success": {"const": True}, "instanceId": STR,
                                            "stepSeconds": {"type": "number"},
                                            "samples": {"type": "array"}}})},
        ),
    }  # fmt: skip

    def __init__(self, bots: BotManager, mapper: BotContainerMapper, usage: UsageHistory) -> None:
        self.bots = bots
        self.pools = bots.pools
        self.mapper = mapper
        self.usage = usage

    def routes(self) -> list[web.RouteDef]:
        return [
            web.get("/api/pool/bot/{instanceId}", self.bot_info),
            web.get("/api/pool/bot/{instanceId}/log", self.bot_log),
            web.get("/api/pool/bot/{instanceId}/usage", self.bot_usage),
        ]

    async def bot_info(self, request: web.Request) -> web.Response:
        where = await self.mapper.resolve(principal(request), request.match_info["instanceId"])
        bot = self.pools.registry.bots.get(where.instance_id) if where.managed else None
        limits = limits_view(self.pools, bot, self.bots.limits) if bot is not None else {}
        return web.json_response({"success": True, **where.to_json(), **limits})

    async def bot_log(self, request: web.Request) -> web.Response:
        bot = self.bots.get(principal(request), request.match_info["instanceId"])
        try:
            max_bytes = int(request.query.get("bytes", LOG_TAIL_DEFAULT))
        except ValueError:
            raise web.HTTPBadRequest(reason="bytes must be an integer") from None
        if not 1 <= max_bytes <= 1024 * 1024:
            raise web.HTTPBadRequest(reason="bytes must be between 1 and 1048576")
        data = await self.pools.sessions.request_log(bot.pool_id, bot.id, max_bytes)
        if data is None:
            raise BotUnavailable(f"pool {bot.pool_id} is not connected")
        return web.Response(body=data, content_type="text/plain", charset="utf-8")

    async def bot_usage(self, request: web.Request) -> web.Response:
        bot = self.bots.get(principal(request), request.match_info["instanceId"])
        return web.json_response(
            {"success": True, "instanceId": bot.id, "stepSeconds": self.usage.step,
             "samples": self.usage.series(bot.id)}
        )  # fmt: skip
