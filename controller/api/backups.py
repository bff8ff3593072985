"""/api/bots/{id}/backups and /api/bots/{id}/restore: a bot's restore points, and putting
its trade database back from one (owner or admin, like every bot route)."""

from __future__ import annotations

from aiohttp import web

from controller.api.middleware import principal, read_json
from controller.backups.points import parse_choice
from controller.backups.service import BackupService
from controller.bots.manager import BotManager


class APIBackups:
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
