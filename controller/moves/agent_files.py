"""A move's files through the agents, for pools on their node's own disk (POOL_STORAGE=node).

The controller cannot see such a pool's directory, so a move's stage and land steps
(controller/moves/transfer.py) ask the agents instead, over their WebSocket (FilesRequest):

- stage: the old pool's agent uploads the held bot's directory as a tar to
  PUT /api/agents/files/<token>; the controller unpacks it (every member checked,
  common/bot_archive.py) into staging, BOT_BASE_DIR/migrating/<bot>, whole or not at all,
  and answers 200 only then; the agent then removes its copy, and answers the request.
- land: the staged directory is packed, and the new pool's agent downloads it from
  GET /api/agents/files/<token>, checks its sha256 and every member, and renames it into
  place; once it answered, staging is removed.

So staging stays on the controller's disk and the crash recovery stays the same: a copy
that is both staged and in a pool (a crash between the upload and the agent's answer) is
landed again from staging, which that agent finds to be the same directory as its own (the
same tree packs to the same sha256): nothing to do, staging removed. A different directory
there is never replaced: both stay, the bot held, for an operator (as on shared storage).
Each token is random (256 bits), good for one transfer of one bot in one direction, and
forgotten when it ends. A request that gives up (its agent silent for TRANSFER_TIMEOUT, or
gone) ends its ticket: an upload still running then is discarded, never staged (answered
409, so that agent keeps its copy), and what the move does next (the bot released where it
is, say) never meets a staged copy appearing later. One upload of a bot at a time.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
from dataclasses import dataclass
from pathlib import Path

import structlog
from aiohttp import StreamReader

from common.bot_archive import (
    MAX_ARCHIVE_BYTES,
    ArchiveError,
    fsync_dir,
    pack_to,
    sweep,
    unpack,
)
from common.protocol import FilesRequest, FilesResponse
from controller.errors import BadRequest, Conflict, FtpoolError, NotFound
from controller.pools.sessions import AgentSessions
from controller.uploads import write_upload

log = structlog.get_logger("controller.moves")
# What a transfer keeps beside staging/<bot> while it runs (unpack's own <target>.partial).
LEFTOVERS = (".upload", ".received", ".received.partial", ".partial", ".tar")
TRANSFER_TIMEOUT = 900.0  # one bot's directory, packed, sent and written: minutes at most


@dataclass(slots=True)
class Ticket:
    bot: str
    op: str  # export (the agent uploads) or import (the agent downloads)
    archive: Path | None  # import: the staged directory packed (export: none)
    used: bool = False
    ended: bool = False  # its request gave up or ended: an upload still running is discarded


class AgentFiles:
    def __init__(self, sessions: AgentSessions, staging: Path) -> None:
        self.sessions = sessions
        self.staging = staging
        self.tickets: dict[str, Ticket] = {}
        self.receiving: set[str] = set()  # bots whose upload is under way

    def sweep(self) -> None:
        """What interrupted transfers left beside staging (uploads, directories being
        unpacked, archives being downloaded): removed at start-up, before any transfer.
        Staged directories themselves (a bare bot id) stay: the crash recovery lands them."""
        for name in sweep(self.staging, LEFTOVERS):
            log.warning("transfer_leftover_removed", name=name)

    def _stage(self, bot_id: str) -> Path:
        return self.staging / bot_id

    async def export(self, pool_id: str, bot_id: str) -> bool:
        """The held bot's directory from its pool's agent into staging; False if the pool has
        none (never written). OSError if it could not be staged (the pool keeps it)."""
        if self._stage(bot_id).exists():
            raise FileExistsError(f"{self._stage(bot_id)} exists already; not overwriting it")
        await asyncio.to_thread(self.staging.mkdir, parents=True, exist_ok=True, mode=0o700)
        response = await self._request(pool_id, bot_id, "export", None)
        if response.absent:
            return False
        if not self._stage(bot_id).is_dir():
            raise OSError(f"the agent of {pool_id} sent no directory of bot {bot_id}")
        log.info("bot_files_staged", bot=bot_id, pool=pool_id)
        return True

    async def import_(self, pool_id: str, bot_id: str) -> None:
        """The staged directory into the pool through its agent, then out of staging."""
        stage = self._stage(bot_id)
        archive = self.staging / f"{bot_id}.tar"
        digest = await asyncio.to_thread(pack_to, stage, archive)
        try:
            await self._request(pool_id, bot_id, "import", archive, digest)
        finally:
            archive.unlink(missing_ok=True)
        await asyncio.to_thread(shutil.rmtree, stage)
        log.info("bot_files_landed", bot=bot_id, pool=pool_id)

    async def _request(
        self, pool_id: str, bot_id: str, op: str, archive: Path | None, digest: str = ""
    ) -> FilesResponse:
        token = secrets.token_hex(32)
        self.tickets[token] = ticket = Ticket(bot_id, op, archive)
        try:
            frame = FilesRequest(self.sessions.next_request_id(), bot_id, op, token, digest)
            try:
                response = await self.sessions.request(pool_id, frame, TRANSFER_TIMEOUT)
            except FtpoolError as exc:  # not connected, or silent: the files stay where they are
                raise OSError(f"bot {bot_id}'s files could not move: {exc}") from None
        finally:
            ticket.ended = True
            self.tickets.pop(token, None)
        assert isinstance(response, FilesResponse)
        if response.error:
            raise OSError(f"the agent of {pool_id}: {response.error}")
        return response

    # -- the agents' HTTP side --------------------------------------------------------------

    def take(self, token: str, op: str) -> Ticket:
        """The ticket of a transfer in progress, once; NotFound for any other token."""
        ticket = self.tickets.get(token)
        if ticket is None or ticket.op != op or ticket.used:
            raise NotFound("no such transfer")
        ticket.used = True
        return ticket

    async def receive(self, ticket: Ticket, body: StreamReader, digest: str) -> None:
        """An uploaded directory into staging, whole, if its sha256 is `digest` and every
        member passes; BadRequest or PayloadTooLarge (nothing staged) if not, Conflict if
        its request gave up meanwhile or another upload of the bot is under way."""
        if ticket.bot in self.receiving:
            raise Conflict(f"an upload of bot {ticket.bot} is under way already")
        self.receiving.add(ticket.bot)
        upload = self.staging / f"{ticket.bot}.upload"
        received = self.staging / f"{ticket.bot}.received"
        try:
            await write_upload(upload, body.iter_chunked(1 << 20), digest, limit=MAX_ARCHIVE_BYTES,
                               what="the archive", bounded_as="a bot's directory",
                               exclusive=False, sync=False)  # fmt: skip
            await asyncio.to_thread(shutil.rmtree, received, True)  # a crash's, if any
            try:
                await asyncio.to_thread(unpack, upload, received)
            except (ArchiveError, FileExistsError) as exc:
                raise BadRequest(f"the archive is refused: {exc}") from None
            self._commit(ticket, received)
            await asyncio.to_thread(fsync_dir, self.staging)
        finally:
            self.receiving.discard(ticket.bot)
            upload.unlink(missing_ok=True)
            await asyncio.to_thread(shutil.rmtree, received, True)

    def _commit(self, ticket: Ticket, received: Path) -> None:
        """The received directory becomes the staged one, unless its request gave up.
        Checked and renamed in one step of the event loop (a rename, on the loop on
        purpose): the request either still waits, and finds it staged, or gave up, and the
        move went on without it (the bot released in its old pool, perhaps)."""
        if ticket.ended:
            log.warning("bot_upload_discarded", bot=ticket.bot, reason="its request gave up")
            raise Conflict("the transfer was given up; the pool keeps its copy")
        stage = self._stage(ticket.bot)
        if os.path.lexists(stage):
            raise BadRequest(f"the archive is refused: {stage} exists already")
        os.rename(received, stage)
