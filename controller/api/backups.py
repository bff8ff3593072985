"""/api/bots/{id}/backups and /api/bots/{id}/restore: a bot's restore points, and putting
its trade database back from one (owner or admin, like every bot route)."""

from __future__ import annotations

from aiohttp import web

from controller.api.middleware import principal, read_json
from controller.api.spec import ID, INT, STR, TRUE, USER, answer, json_body, nullable, obj, op
from controller.backups.points import parse_choice
from controller.backups.service import BackupService
from controller.bots.manager import BotManager

_POINT = obj(
    {"id": STR, "database": STR, "time": STR, "bytes": INT, "poolId": ID,
     "stored": {"type": "array", "items": {"enum": ["local", "bucket"]}}},
    trades=nullable(INT), openTrades=nullable(INT),
)  # fmt: skip
_ONE_BOT = {"security": USER, "tags": ("backups",)}


class APIBackups:
    operations = {
        ("GET", "/api/bots/{instanceId}/backups"): op(
            "the bot's restore points, newest first (owner or admin)",
            errors=(400, 403, 404),
            ok={200: answer(obj({"success": TRUE, "instanceId": ID,
                                 "restorePoints": {"type": "array", "items": _POINT}}))},
            **_ONE_BOT,
        ),
        ("POST", "/api/bots/{instanceId}/restore"): op(
            "put the bot's trade database back from a restore point (the one in force at "
            "`time`, or the one named); the current database is kept aside",
            errors=(403, 404, 409, 503),
            body=json_body({"oneOf": [
                {"type": "object", "additionalProperties": False, "required": ["restorePoint"],
                 "properties": {"restorePoint": STR}},
                {"type": "object", "additionalProperties": False, "required": ["time"],
                 "properties": {"time": STR}},
            ]}),
            ok={200: answer(obj({"success": TRUE, "instanceId": ID, "restorePoint": _POINT},
                                keptAs=nullable(STR)))},
            **_ONE_BOT,
        ),
    }  # fmt: skip

    def __init__(self, bots: BotManager, backups: BackupService) -> None:
        self.bots = bots
        self.backups = backups

    def routes(self) -> list[web.RouteDef]:
        # Before the proxy: these take precedence over proxied /api/bots/{id}/<path>.
        return [
            web.get("/api/bots/{instanceId}/backups", self.list),
            web.post("/api/bots/{instanceId}/restore", self.restore),
        ]

    async def list(self, request: web.Request) -> web.Response:
        bot = self.bots.get(principal(request), request.match_info["instanceId"])
        points = await self.backups.points(bot)
        return web.json_response({
            "success": True, "instanceId": bot.id,
            "restorePoints": [p.to_json() for p in reversed(points)],
        })  # fmt: skip

    async def restore(self, request: web.Request) -> web.Response:
        bot = self.bots.get(principal(request), request.match_info["instanceId"])
        point_id, at = parse_choice(await read_json(request))
        done = await self.backups.restore(bot, point_id, at)
        return web.json_response({"success": True, "instanceId": bot.id, **done})
