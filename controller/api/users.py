"""/api/users/{userId}/quota: how many bots a user may have; the admin sets a user's own."""

from __future__ import annotations

from aiohttp import web

from controller.api.middleware import principal, read_json
from controller.api.spec import ADMIN, INT, TRUE, USER, answer, json_body, nullable, obj, op
from controller.bots.manager import BotManager
from controller.errors import BadRequest

MAX_QUOTA = 1_000_000


_QUOTA = answer(obj({
    "success": TRUE, "userId": {"type": "string"}, "maxBots": nullable(INT), "bots": INT,
    "own": nullable(INT), "default": nullable(INT),
}))  # fmt: skip


class APIUsers:
    operations = {
        ("GET", "/api/users/{userId}/quota"): op(
            "how many bots the user may have and has (the admin, or that user)",
            security=USER, tags=("users",), errors=(400, 403), ok={200: _QUOTA},
        ),
        ("PUT", "/api/users/{userId}/quota"): op(
            "set the user's own quota of bots (admin); null returns to USER_MAX_BOTS",
            security=ADMIN, tags=("users",), errors=(400,), ok={200: _QUOTA},
            body=json_body({
                "type": "object", "additionalProperties": False, "required": ["maxBots"],
                "properties": {"maxBots": nullable(
                    {"type": "integer", "minimum": 0, "maximum": MAX_QUOTA})},
            }),
        ),
    }  # fmt: skip

    def __init__(self, bots: BotManager) -> None:
        self.bots = bots

    def routes(self) -> list[web.RouteDef]:
        return [
            web.get("/api/users/{userId}/quota", self.quota),
            web.put("/api/users/{userId}/quota", self.set_quota),
        ]

    async def quota(self, request: web.Request) -> web.Response:
        view = await self.bots.quota(principal(request), request.match_info["userId"])
        return web.json_response({"success": True, **view})

    async def set_quota(self, request: web.Request) -> web.Response:
        who, user_id = principal(request), request.match_info["userId"]
        who.require_admin()
        body = await read_json(request)
        if not isinstance(body, dict) or set(body) != {"maxBots"}:
            raise BadRequest('body must be {"maxBots": <bots, 0 for no limit, or null>}')
        max_bots = body["maxBots"]
        if max_bots is not None and (
            type(max_bots) is not int or not 0 <= max_bots <= MAX_QUOTA
        ):  # fmt: skip
            raise BadRequest(f"maxBots must be an integer from 0 to {MAX_QUOTA}, or null")
        await self.bots.set_quota(who, user_id, max_bots)
        view = await self.bots.quota(who, user_id)
        return web.json_response({"success": True, **view})
