"""/api/agents/backups/...: restore points an agent sends to the controller.

Used only with BACKUP_TRANSPORT=controller (controller/backups/receive.py): BACKUP_DIR is
then on the controller's host alone. No session or bearer token of a user: the pool's own
token (the agent's, as in its hello), for its own bots' points only.
"""

from __future__ import annotations

import json
from pathlib import Path

from aiohttp import web

from common.bot_archive import SHA_HEADER
from common.protocol.fields import is_hex64
from controller.api.middleware import public
from controller.api.spec import PUBLIC, TRUE, Operations, answer, json_body, obj, op
from controller.backups.receive import PointReceiver
from controller.errors import BadRequest, NotFound, PayloadTooLarge

POINT = "/api/agents/backups/{poolId}/{instanceId}/{point}"
MAX_MARK_BYTES = 256
STORED = obj({"success": TRUE, "stored": {"type": "boolean"}})
SNAPSHOT = {
    "required": True,
    "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}},
}


class APIAgentBackups:
    operations: Operations = {
        ("PUT", POINT): op(
            "an agent sends a new restore point of one of its pool's bots",
            security=PUBLIC, tags=("agents",), errors=(400, 401, 404, 409, 413),
            description="Authorization: Bearer <the pool's token>. The body is the "
            "snapshot (a SQLite database) with its sha256 in X-Ftpool-Sha256; the point is "
            "<database>@<stamp> as restore points are named, its time within an hour "
            "before and 5 minutes after the controller's. A point is never replaced: the "
            "same bytes again answer stored false, others 409.",
            body=SNAPSHOT, ok={200: answer(STORED, "written (stored true) or there already")},
        ),
        ("POST", POINT + "/checked"): op(
            "an agent says a bot's database still equalled its newest restore point",
            security=PUBLIC, tags=("agents",), errors=(400, 401, 404, 409, 413),
            description='Authorization: Bearer <the pool\'s token>. Body {"at": <unix '
            "time>}: until when (at most the controller's time). 404: no point of that "
            "database, 409: not the newest one (the agent sends a new point).",
            body=json_body(obj({"at": {"type": "number"}})),
            ok={200: answer(obj({"success": TRUE}), "marked")},
        ),
    }  # fmt: skip

    def __init__(self, receiver: PointReceiver | None) -> None:
        self.receiver = receiver  # None: agents write their points themselves (mount)

    def routes(self) -> list[web.RouteDef]:
        return [web.put(POINT, self.put_point), web.post(POINT + "/checked", self.checked)]

    def _admit(self, request: web.Request) -> tuple[PointReceiver, Path, str]:
        """The receiver, the bot's directory of points (its pool's token checked) and the
        point's name, as the path gives them."""
        if self.receiver is None:
            raise NotFound("restore points are not sent to this controller")
        m = request.match_info
        authorization = request.headers.get("Authorization", "")
        bot_dir = self.receiver.admit(m["poolId"], authorization, m["instanceId"])
        return self.receiver, bot_dir, m["point"]

    @public
    async def put_point(self, request: web.Request) -> web.Response:
        receiver, bot_dir, point = self._admit(request)
        digest = request.headers.get(SHA_HEADER, "")
        if not is_hex64(digest):
            raise BadRequest(f"{SHA_HEADER} must be the point's sha256 (64 hex digits)")
        chunks = request.content.iter_chunked(1 << 20)
        stored = await receiver.receive(bot_dir, point, chunks, digest)
        return web.json_response({"success": True, "stored": stored})

    @public
    async def checked(self, request: web.Request) -> web.Response:
        receiver, bot_dir, point = self._admit(request)
        raw = await request.read()  # bounded by MAX_BODY_BYTES, then by this
        if len(raw) > MAX_MARK_BYTES:
            raise PayloadTooLarge('body must be {"at": <unix time>}')
        try:
            body = json.loads(raw)
        except ValueError:
            raise BadRequest('body must be {"at": <unix time>}') from None
        await receiver.checked(bot_dir, point, body)
        return web.json_response({"success": True})
