"""/api/pool/migration: the migration tool's side of the controller (admin only).

`ftpool migrate` drives these one bot at a time, so it can show progress; the work
itself runs in the controller, on its records and under its locks. A client that goes
away does not cut a bot's migration short: it runs to its end in the controller.
"""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web

from common.ids import check_id
from controller.api.middleware import principal, read_json
from controller.api.spec import ADMIN, ID, NUM, Operations, answer, json_body, obj, op, ref
from controller.errors import BadRequest
from controller.migration.log import Run
from controller.migration.run import Migrator

VERIFY_TIMEOUT = 60.0
MAX_VERIFY_TIMEOUT = 600.0
_IDS = {"type": "array", "items": ID}
_RUN_BODY = json_body({
    "type": "object", "additionalProperties": False,
    "properties": {"verifyTimeout": {**NUM, "exclusiveMinimum": 0, "maximum": MAX_VERIFY_TIMEOUT}},
})  # fmt: skip
_RUN = answer(obj({"success": {"type": "boolean"}, "run": ref("MigrationRun")}),
              "the run, once it ended (success false: it failed)")  # fmt: skip
OPERATIONS: Operations = {
    ("GET", "/api/pool/migration/plan"): op(
        "what a migration would do, bot by bot", security=ADMIN, tags=("migration",),
        errors=(400,),
        params=(
            {"name": "bot", "in": "query", "schema": _IDS, "explode": True,
             "description": "only these bots"},
            {"name": "user", "in": "query", "schema": _IDS, "explode": True,
             "description": "only these users' bots"},
        ),
        ok={200: answer(obj({"success": {"const": True}, "bots": {"type": "array"},
                             "skipped": {"type": "array"}}))},
    ),
    ("GET", "/api/pool/migration/log"): op(
        "the migration log's runs", security=ADMIN, tags=("migration",), errors=(400,),
        params=({"name": "bot", "in": "query", "schema": _IDS, "explode": True,
                 "description": "only these bots' runs"},),
        ok={200: answer(obj({"success": {"const": True},
                             "runs": {"type": "array", "items": ref("MigrationRun")}}))},
    ),
    ("POST", "/api/pool/migration/bots/{instanceId}"): op(
        "migrate one legacy bot into a pool", security=ADMIN, tags=("migration",),
        body=_RUN_BODY, errors=(404, 409), ok={200: _RUN},
    ),
    ("POST", "/api/pool/migration/bots/{instanceId}/rollback"): op(
        "move one pooled bot back to a legacy container", security=ADMIN,
        tags=("migration",), body=_RUN_BODY, errors=(404, 409), ok={200: _RUN},
    ),
}  # fmt: skip


def _ids(request: web.Request, name: str) -> set[str]:
    return {check_id(v, name) for v in request.query.getall(name, ())}


class APIMigration:
    operations = OPERATIONS

    def __init__(self, migrator: Migrator) -> None:
        self.migrator = migrator
        self._running: set[asyncio.Task[Run]] = set()

    def routes(self) -> list[web.RouteDef]:
        return [
            web.get("/api/pool/migration/plan", self.plan),
            web.get("/api/pool/migration/log", self.history),
            web.post("/api/pool/migration/bots/{instanceId}", self.migrate),
            web.post("/api/pool/migration/bots/{instanceId}/rollback", self.rollback),
        ]

    async def shutdown(self, _app: web.Application) -> None:
        """Stop runs in flight before the store closes; a held bot is released where its
        record is at the next start (controller/migration/run.py)."""
        for task in list(self._running):
            task.cancel()
        await asyncio.gather(*self._running, return_exceptions=True)

    async def plan(self, request: web.Request) -> web.Response:
        principal(request).require_admin()
        plan = await self.migrator.planner.plan(_ids(request, "bot"), _ids(request, "user"))
        return web.json_response({"success": True, **plan})

    async def history(self, request: web.Request) -> web.Response:
        principal(request).require_admin()
        bots = _ids(request, "bot")
        runs = [r.to_json() for r in self.migrator.log.runs if not bots or r.bot in bots]
        return web.json_response({"success": True, "runs": runs})

    async def _verify_timeout(self, request: web.Request) -> float:
        body = await read_json(request, empty={})
        if not isinstance(body, dict) or set(body) - {"verifyTimeout"}:
            raise BadRequest('body must be {"verifyTimeout": seconds} or empty')
        timeout = body.get("verifyTimeout", VERIFY_TIMEOUT)
        if isinstance(timeout, bool) or not isinstance(timeout, int | float):
            raise BadRequest("verifyTimeout must be a number of seconds")
        if not 0 < timeout <= MAX_VERIFY_TIMEOUT:
            raise BadRequest(f"verifyTimeout must be above 0 and at most {MAX_VERIFY_TIMEOUT:g}")
        return float(timeout)

    async def _run(self, request: web.Request, action: str) -> web.Response:
        principal(request).require_admin()
        bot_id = check_id(request.match_info["instanceId"], "instanceId")
        timeout = await self._verify_timeout(request)
        task = asyncio.create_task(getattr(self.migrator, action)(bot_id, timeout))
        self._running.add(task)
        task.add_done_callback(self._running.discard)
        run = await asyncio.shield(task)
        return web.json_response(_result(run))

    async def migrate(self, request: web.Request) -> web.Response:
        return await self._run(request, "migrate")

    async def rollback(self, request: web.Request) -> web.Response:
        return await self._run(request, "rollback")


def _result(run: Run) -> dict[str, Any]:
    done = "migrated" if run.kind == "migrate" else "rolled_back"
    return {"success": run.outcome in (done, "skipped"), "run": run.to_json()}
