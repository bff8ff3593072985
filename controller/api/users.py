"""/api/users/{userId}/quota: how many bots a user may have, and how much memory and how
many CPUs their bots' limits may add up to; the admin sets a user's own."""

from __future__ import annotations

from aiohttp import web

from common.units import parse_bytes
from controller.api.middleware import principal, read_json
from controller.api.spec import (
    ADMIN,
    INT,
    NUM,
    STR,
    TRUE,
    USER,
    answer,
    json_body,
    nullable,
    obj,
    op,
)  # fmt: skip
from controller.bots.limits import MAX_BOT_CPU, MIN_BOT_MEMORY, parse_cpu
from controller.bots.manager import BotManager
from controller.errors import BadRequest

MAX_QUOTA = 1_000_000


_QUOTA = answer(obj({
    "success": TRUE, "userId": {"type": "string"}, "maxBots": nullable(INT), "bots": INT,
    "own": nullable(INT), "default": nullable(INT), "maxMemoryBytes": nullable(INT),
    "memoryBytes": INT, "maxCpu": nullable(NUM), "cpu": NUM, "ownCpu": nullable(NUM),
    "defaultCpu": nullable(NUM),
}))  # fmt: skip
_BODY = (
    'body must be {"maxBots": <bots, 0 for no limit, or null>, "maxMemory": <size or '
    'null>, "maxCpu": <CPUs, 0 for no limit, or null>}'
)


class APIUsers:
    operations = {
        ("GET", "/api/users/{userId}/quota"): op(
            "how many bots the user may have and has, their memory budget and CPU quota and "
            "the sums of their bots' memory and CPU limits (the admin, or that user)",
            security=USER, tags=("users",), errors=(400, 403), ok={200: _QUOTA},
        ),
        ("PUT", "/api/users/{userId}/quota"): op(
            "set the user's own quota of bots (admin; null returns to USER_MAX_BOTS), their "
            "memory budget (null: none) and/or their CPU quota (null returns to USER_MAX_CPU)",
            security=ADMIN, tags=("users",), errors=(400,), ok={200: _QUOTA},
            body=json_body({
                "type": "object", "additionalProperties": False, "minProperties": 1,
                "properties": {
                    "maxBots": nullable({"type": "integer", "minimum": 0, "maximum": MAX_QUOTA}),
                    "maxMemory": nullable({"oneOf": [STR, {"type": "integer", "minimum": 0}]}),
                    "maxCpu": nullable({"type": "number", "minimum": 0, "maximum": MAX_BOT_CPU}),
                },
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
        if (
            not isinstance(body, dict)
            or not body
            or not set(body) <= {"maxBots", "maxMemory", "maxCpu"}
        ):
            raise BadRequest(_BODY)
        change: dict[str, float | None] = {}
        if "maxBots" in body:
            max_bots = change["max_bots"] = body["maxBots"]
            if max_bots is not None and (
                type(max_bots) is not int or not 0 <= max_bots <= MAX_QUOTA
            ):  # fmt: skip
                raise BadRequest(f"maxBots must be an integer from 0 to {MAX_QUOTA}, or null")
        if "maxMemory" in body:
            change["max_memory"] = memory_budget(body["maxMemory"])
        if "maxCpu" in body:
            change["max_cpu"] = parse_cpu(body["maxCpu"], "maxCpu", least=0)
        await self.bots.set_quota(who, user_id, **change)
        view = await self.bots.quota(who, user_id)
        return web.json_response({"success": True, **view})


def memory_budget(raw: object) -> int | None:
    """A body's `maxMemory`: a size (`4g`) or bytes, at least one bot's smallest limit."""
    if raw is None:
        return None
    try:
        budget = parse_bytes(raw)
    except ValueError as exc:
        raise BadRequest(f"maxMemory {exc}") from None
    if budget < MIN_BOT_MEMORY:
        raise BadRequest(f"maxMemory must be at least {MIN_BOT_MEMORY >> 20} MiB, or null")
    return budget
