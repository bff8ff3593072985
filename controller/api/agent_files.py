"""/api/agents/files/{token}: a moving bot's directory between an agent and the controller.

Used only by pools on their node's own disk (POOL_STORAGE=node, controller/moves/
agent_files.py). No session or bearer token: each transfer has its own token, 256 random
bits sent to the one agent concerned over its WebSocket, good for one request (any other
answers 404, like an unknown path).
"""

from __future__ import annotations

from aiohttp import web

from common.bot_archive import SHA_HEADER
from common.protocol.fields import is_hex64
from controller.api.middleware import public
from controller.api.spec import PUBLIC, TRUE, Operations, answer, obj, op
from controller.errors import BadRequest, NotFound
from controller.moves.agent_files import AgentFiles

TAR = {"application/x-tar": {"schema": {"type": "string", "format": "binary"}}}


class APIAgentFiles:
    operations: Operations = {
        ("PUT", "/api/agents/files/{token}"): op(
            "an agent uploads a held bot's directory (a tar) to the controller's staging",
            security=PUBLIC, tags=("agents",), errors=(400, 404, 409, 413),
            description="The token is the transfer's own (sent to the agent over its "
            "WebSocket), good once. The body is a tar archive with its sha256 in "
            "X-Ftpool-Sha256; only plain relative names, regular files and directories are "
            "accepted, within bounds. Answered once the directory is staged whole; 409 if the "
            "transfer was given up meanwhile (nothing staged: the pool keeps its copy).",
            ok={200: answer(obj({"success": TRUE}), "staged")},
        ),
        ("GET", "/api/agents/files/{token}"): op(
            "an agent downloads a staged bot's directory (a tar) to put it in its pool",
            security=PUBLIC, tags=("agents",), errors=(404,),
            description="The token is the transfer's own, good once; the agent checks the "
            "archive's sha256 (sent with the request) and every member.",
            ok={200: {"description": "the tar archive", "content": TAR}},
        ),
    }  # fmt: skip

    def __init__(self, files: AgentFiles | None) -> None:
        self.files = files  # None: pools' directories are the controller's own (shared)

    def routes(self) -> list[web.RouteDef]:
        return [
            web.put("/api/agents/files/{token}", self.upload),
            web.get("/api/agents/files/{token}", self.download),
        ]

    def _files(self, request: web.Request) -> tuple[AgentFiles, str]:
        token = request.match_info["token"]
        if self.files is None or not is_hex64(token):
            raise NotFound("no such transfer")
        return self.files, token

    @public
    async def upload(self, request: web.Request) -> web.Response:
        files, token = self._files(request)
        ticket = files.take(token, "export")
        digest = request.headers.get(SHA_HEADER, "")
        if not is_hex64(digest):
            raise BadRequest(f"{SHA_HEADER} must be the archive's sha256 (64 hex digits)")
        await files.receive(ticket, request.content, digest)
        return web.json_response({"success": True})

    @public
    async def download(self, request: web.Request) -> web.FileResponse:
        files, token = self._files(request)
        ticket = files.take(token, "import")
        assert ticket.archive is not None  # an import's
        return web.FileResponse(ticket.archive, headers={"Content-Type": "application/x-tar"})
