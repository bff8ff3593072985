"""A held bot's directory sent to the controller or received from it, for pools on their
node's own disk (POOL_STORAGE=node, docs/swarm.md#bot-directories): a move's files travel
through the agents, not through a file system the controller shares with the node.

- export: the directory is packed (common/bot_archive.py: links left out, never followed)
  into /pool/.transfer/<bot>.tar and uploaded to the controller's
  /api/agents/files/<token> with its sha256; once the controller answers that it staged
  it whole, the directory leaves the pool (renamed out of bots/, then deleted), if the bot
  is still held in the newest desired state (else it stays, and the export fails).
- import: the archive is downloaded from there (bounded), its sha256 checked, unpacked
  (every member checked, every file fsynced) into /pool/.transfer/<bot>.incoming, its
  trade databases checked whole (quick_check), and renamed into bots/<bot> in one step.
  A directory already there is left alone: the same one (a move cut short and taken up
  again: it packs to the same sha256) is the answer; a different one is refused, both kept.

Interrupted anywhere, the bot's directory is in the pool whole, or not at all; the
controller's copy (its staging) is removed only once this answered. One transfer of a bot
at a time: another asked meanwhile (the controller gave up on the first and tried again)
is refused until the first has ended. Only the bot id (a valid id) and the token (64 hex
digits) from the controller reach a path or a URL.
"""

from __future__ import annotations

import asyncio
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import aiohttp
import structlog

from agent.backup_targets import agent_url
from common.bot_archive import (
    MAX_ARCHIVE_BYTES,
    SHA_HEADER,
    ArchiveError,
    pack,
    pack_to,
    sha256_of,
    sweep,
    unpack,
)
from common.protocol import FilesRequest, FilesResponse
from common.restore_points import DB_NAMES, check_intact

log = structlog.get_logger("agent.transfer")
TIMEOUT = aiohttp.ClientTimeout(total=None, connect=10, sock_read=60)


def files_url(controller_url: str, token: str) -> str:
    """The controller's /api/agents/files/<token> beside its WebSocket's URL."""
    return agent_url(controller_url, f"files/{token}")


class BotTransfer:
    def __init__(self, pool_dir: Path, controller_url: str, held: Callable[[str], bool]) -> None:
        self.pool_dir = pool_dir
        self.bots_dir = pool_dir / "bots"
        self.work_dir = pool_dir / ".transfer"  # beside bots/, on the same file system
        self.controller_url = controller_url
        self.held = held  # whether the newest desired state holds the bot
        self.busy: set[str] = set()  # bots with a transfer under way

    def sweep(self) -> None:
        """What transfers an agent's restart cut short left in .transfer/ (archives,
        directories being unpacked or deleted): removed before any transfer. An exported
        directory renamed to <bot>.gone was staged whole on the controller first."""
        for name in sweep(self.work_dir, (".tar", ".incoming", ".incoming.partial", ".gone")):
            log.warning("transfer_leftover_removed", name=name)

    async def handle(self, req: FilesRequest) -> FilesResponse:
        """The request carried out (the caller checked that the bot is held)."""
        if req.bot in self.busy:
            error = f"{req.op} refused: a transfer of bot {req.bot} is still under way"
            return FilesResponse(req.id, error=error)
        self.busy.add(req.bot)
        try:
            await asyncio.to_thread(self.work_dir.mkdir, mode=0o700, exist_ok=True)
            if req.op == "export":
                return await self._export(req)
            return await self._import(req)
        except (OSError, ValueError, aiohttp.ClientError, TimeoutError) as exc:
            log.warning("bot_transfer_failed", bot=req.bot, op=req.op, error=str(exc))
            return FilesResponse(req.id, error=f"{req.op} failed: {exc}"[:1024])
        finally:
            self.busy.discard(req.bot)

    async def _export(self, req: FilesRequest) -> FilesResponse:
        bot_dir = self.bots_dir / req.bot
        if not bot_dir.is_dir() or bot_dir.is_symlink():
            return FilesResponse(req.id, absent=True)
        archive = self.work_dir / f"{req.bot}.tar"
        try:
            digest = await asyncio.to_thread(pack_to, bot_dir, archive)
            url = files_url(self.controller_url, req.token)
            with archive.open("rb") as body:
                headers = {SHA_HEADER: digest, "Content-Type": "application/x-tar",
                           "Content-Length": str(archive.stat().st_size)}  # fmt: skip
                async with (
                    aiohttp.ClientSession(timeout=TIMEOUT) as session,
                    session.put(url, data=body, headers=headers) as response,
                ):
                    if response.status != 200:
                        said = (await response.text())[:300]
                        raise OSError(f"upload refused ({response.status}: {said})")
        finally:
            archive.unlink(missing_ok=True)
        if not self.held(req.bot):
            # Released meanwhile (the controller gave up on this transfer and the bot runs
            # here again): this copy is the bot's; never deleted under it.
            log.error("bot_export_kept", bot=req.bot, reason="no longer held")
            raise OSError(f"bot {req.bot} is no longer held; the pool keeps its directory")
        # Staged whole on the controller: the pool's copy goes.
        gone = self.work_dir / f"{req.bot}.gone"
        await asyncio.to_thread(_remove, gone)
        await asyncio.to_thread(os.rename, bot_dir, gone)
        await asyncio.to_thread(_remove, gone)
        log.info("bot_exported", bot=req.bot, sha256=digest)
        return FilesResponse(req.id)

    async def _import(self, req: FilesRequest) -> FilesResponse:
        archive = self.work_dir / f"{req.bot}.tar"
        try:
            await self._download(files_url(self.controller_url, req.token), archive)
            if await asyncio.to_thread(sha256_of, archive) != req.sha256:
                raise ValueError("the archive's sha256 does not match")
            landed = await asyncio.to_thread(self._land, req.bot, archive, req.sha256)
        finally:
            archive.unlink(missing_ok=True)
        log.info("bot_imported" if landed else "bot_import_already_there", bot=req.bot)
        return FilesResponse(req.id)

    async def _download(self, url: str, target: Path) -> None:
        async with (
            aiohttp.ClientSession(timeout=TIMEOUT) as session,
            session.get(url) as response,
        ):
            if response.status != 200:
                raise OSError(f"the controller refused the download ({response.status})")
            if (response.content_length or 0) > MAX_ARCHIVE_BYTES:
                raise ArchiveError("the archive is larger than a bot's directory may be")
            size = 0
            fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
            with os.fdopen(fd, "wb") as out:
                async for chunk in response.content.iter_chunked(1 << 20):
                    size += len(chunk)
                    if size > MAX_ARCHIVE_BYTES:
                        raise ArchiveError("the archive is larger than a bot's directory may be")
                    await asyncio.to_thread(out.write, chunk)

    def _land(self, bot_id: str, archive: Path, digest: str) -> bool:
        """Unpacked beside bots/, checked, and renamed into bots/<bot>; False if the same
        directory is there already (a move cut short after it landed, or before the old
        pool's copy was removed: nothing to do). OSError if a different one is there: both
        stay, the bot held, for an operator (a stale staged copy never replaces it)."""
        target = self.bots_dir / bot_id
        if os.path.lexists(target):
            if target.is_dir() and not target.is_symlink():
                with open(os.devnull, "wb") as sink:
                    if pack(target, sink) == digest:
                        return False
            raise FileExistsError(
                f"a different directory of bot {bot_id} is in this pool already; "
                "both kept, for an operator"
            )
        incoming = self.work_dir / f"{bot_id}.incoming"
        _remove(incoming)
        unpack(archive, incoming)
        try:
            for name in DB_NAMES:
                if (incoming / name).is_file():
                    check_intact(incoming / name)
            self.bots_dir.mkdir(mode=0o711, exist_ok=True)
            os.rename(incoming, target)
            fd = os.open(self.bots_dir, os.O_RDONLY | os.O_DIRECTORY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        except BaseException:
            _remove(incoming)
            raise
        return True


def _remove(path: Path) -> None:
    if path.is_symlink() or path.is_file():
        path.unlink()
    elif path.exists():
        shutil.rmtree(path)
