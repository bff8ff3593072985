"""The controller's requests about one bot, answered: the tail of its log, its database
restored from a snapshot, its directory sent or received (agent/bot_transfer.py). A
restore or a transfer needs the bot held, and keeps it from starting until it ends."""

from __future__ import annotations

import asyncio

import structlog

from agent.backups import Backups
from agent.bot_transfer import BotTransfer
from agent.programs import program_name
from agent.reconcile import Reconciler
from agent.supervisor import SupervisorClient, SupervisorError
from common.protocol import (
    FilesRequest,
    FilesResponse,
    LogRequest,
    LogResponse,
    RestoreRequest,
    RestoreResponse,
)
from common.states import ACTIVE

log = structlog.get_logger("agent")


class BotRequests:
    def __init__(
        self,
        supervisor: SupervisorClient,
        reconciler: Reconciler,
        backups: Backups | None,
        transfer: BotTransfer,
    ) -> None:
        self.supervisor = supervisor
        self.reconciler = reconciler
        self.backups = backups
        self.transfer = transfer

    async def answer(
        self, req: LogRequest | RestoreRequest | FilesRequest
    ) -> LogResponse | RestoreResponse | FilesResponse:
        if isinstance(req, LogRequest):
            return await self._tail_log(req)
        if isinstance(req, FilesRequest):
            return await self._files(req)
        return await self._restore(req)

    async def _tail_log(self, req: LogRequest) -> LogResponse:
        try:
            data = await self.supervisor.tail_log(program_name(req.bot), req.max_bytes)
            return LogResponse(id=req.id, data=data)
        except SupervisorError as exc:
            return LogResponse(id=req.id, error=str(exc)[:1024])

    async def _restore(self, req: RestoreRequest) -> RestoreResponse:
        """A held bot's database back from a snapshot (the controller held it first: no
        program runs it, so nothing writes the database meanwhile)."""
        spec = (
            next((b for b in self.backups.specs if b.id == req.bot), None) if self.backups else None
        )
        if spec is None:
            return RestoreResponse(req.id, error="this pool makes no backups of that bot")
        if not self.reconciler.begin_restore(req.bot):
            return RestoreResponse(req.id, error="the bot is not held; hold it first")
        # The restore runs to its end even if this request is cancelled (the controller went
        # away): the bot stays unstarted until then.
        restore = asyncio.ensure_future(self._restore_held(req, spec.port))
        restore.add_done_callback(lambda done: self._restore_ended(req.bot, done))
        try:
            kept = await asyncio.shield(restore)
        except (OSError, ValueError, RuntimeError, SupervisorError) as exc:
            return RestoreResponse(req.id, error=f"restore failed: {exc}"[:1024])
        return RestoreResponse(req.id, kept=kept)

    async def _files(self, req: FilesRequest) -> FilesResponse:
        """A held bot's directory sent to the controller or received from it (agent/
        bot_transfer.py); kept from starting meanwhile, like a restore, and carried out to
        its end even if the controller goes away."""
        if not self.reconciler.begin_restore(req.bot):
            return FilesResponse(req.id, error="the bot is not held; hold it first")
        info = (await self.supervisor.all_processes()).get(program_name(req.bot))
        if info is not None and info.state in ACTIVE:
            self.reconciler.end_restore(req.bot)
            return FilesResponse(req.id, error="the bot is running; hold it first")
        transfer = asyncio.ensure_future(self.transfer.handle(req))
        transfer.add_done_callback(lambda _done: self.reconciler.end_restore(req.bot))
        return await asyncio.shield(transfer)

    def _restore_ended(self, bot_id: str, done: asyncio.Future[str]) -> None:
        self.reconciler.end_restore(bot_id)
        if not done.cancelled() and done.exception() is not None:
            log.warning("restore_failed", bot=bot_id, error=str(done.exception()))

    async def _restore_held(self, req: RestoreRequest, port: int) -> str:
        assert self.backups is not None
        info = (await self.supervisor.all_processes()).get(program_name(req.bot))
        if info is not None and info.state in ACTIVE:
            raise RuntimeError("the bot is running; hold it first")
        return await self.backups.restore(req.bot, port, req.db, req.point)
