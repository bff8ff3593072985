"""Listing and restoring a bot's backups, and removing deleted bots' backups.

A restore goes through the bot's agent (principle 2): the bot is held, as a move holds it
(its agent stops it and runs no program for it), the agent puts the snapshot in place of
its database (keeping the current one aside), and the bot is released, so it runs again
as its user wants. The controller only reads the backup target, which is its own, and
copies a snapshot between two pools' directories there when the bot has moved since.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import time
from collections.abc import Callable, Iterable
from dataclasses import replace
from pathlib import Path

import structlog

from common.protocol import RestoreRequest, RestoreResponse
from common.restore_points import SIDE_FILES, check_intact, stamp_of
from controller.backups.bucket import BucketError
from controller.backups.offsite import OffsiteCopy, bot_of, thinned
from controller.backups.points import (
    RestorePoint,
    accepted,
    bot_dirs,
    choose,
    latest,
    list_points,
    with_bucket,
)
from controller.backups.receive import PointReceiver
from controller.errors import BotUnavailable, Conflict, NotFound
from controller.events import EventBus
from controller.moves.guard import MoveGuard
from controller.moves.transfer import Transfer
from controller.pools.config import pool_backup_dir
from controller.records import BotRecord

log = structlog.get_logger("controller.backups")
RESTORE_TIMEOUT = 120.0  # the agent copies one database: seconds, even for a large one
SWEEP_INTERVAL = 600.0


def expired(
    dirs: Iterable[tuple[str, float]], known: set[str], purged: set[str], now: float,
    retention: float,
) -> list[str]:  # fmt: skip
    """The deleted bots whose backups go: purged ones at once, others once their newest
    snapshot is older than the retention. `dirs`: (bot id, newest file's mtime)."""
    return sorted({
        bot_id for bot_id, newest in dirs
        if bot_id not in known and (bot_id in purged or now - newest > retention)
    })  # fmt: skip


def _newest(directory: Path) -> float:
    newest = directory.stat().st_mtime
    for path in directory.rglob("*"):
        with contextlib.suppress(FileNotFoundError):  # thinned since the listing
            newest = max(newest, path.stat().st_mtime)
    return newest


class BackupService:
    def __init__(
        self, root: Path | None, transfer: Transfer, guard: MoveGuard, events: EventBus,
        retention_days: int, clock: Callable[[], float] = time.time,
        offsite: OffsiteCopy | None = None, shipped: bool = False,
    ) -> None:  # fmt: skip
        self.root = root  # BACKUP_DIR; None: backups are off
        # BACKUP_TRANSPORT=controller: agents send their points here (`receiver`), and have
        # none of their own to restore from: a restore lands the point through the move's
        # stage and land steps instead (`_restore_staged`).
        self.shipped = shipped and root is not None
        self.receiver = (
            PointReceiver(root, transfer.registry, retention_days, clock)
            if self.shipped and root is not None
            else None
        )
        self.transfer = transfer
        self.pools = transfer.pools
        self.registry = transfer.registry
        self.guard = guard
        self.events = events
        self.retention_days = retention_days
        self.retention = retention_days * 86400.0
        self.offsite = offsite  # the bucket's copy of the target, if one is configured
        self.clock = clock
        self.purged: set[str] = set()  # deleted with purge: their backups go at once
        # Purged bots whose objects must still go from the bucket (it failed, or was
        # never listed since): they hold exchange keys in their config copies.
        self.purged_in_bucket: set[str] = set()
        self._sweeping = asyncio.Lock()
        self._wake = asyncio.Event()

    def _root(self) -> Path:
        if self.root is None:
            raise NotFound("backups are off (BACKUP_DIR=off)")
        return self.root

    async def points(self, bot: BotRecord) -> list[RestorePoint]:
        """The bot's restore points, local and in the bucket: the listing, every restore and
        every failover or evacuation from points reads them here. Only its own (`accepted`):
        made since it was created (older ones are a deleted bot's that had the same id, kept
        for BACKUP_RETENTION) by a pool it lived in, while it lived there, and not since
        taken by a later pool with that id."""
        root = self._root()
        stays = await self.pools.store.stays(bot.id)
        points = await asyncio.to_thread(list_points, root, bot.id)
        if self.offsite is not None:
            try:
                points = with_bucket(points, await self.offsite.points(bot.id), root)
            except BucketError as exc:  # the local ones still count
                log.warning("backup_bucket_unlisted", bot=bot.id, error=str(exc))
        pools = {**self.registry.retiring, **self.registry.pools}
        made = {pool_id: pool.created_at for pool_id, pool in pools.items()}
        return accepted(points, stays, bot.created_at, made)

    async def restore(self, bot: BotRecord, point_id: str | None, at: float | None) -> dict:
        """Stop the bot, put its database back from a restore point, start it again."""
        root = self._root()
        self._refuse_if_busy(bot)
        live = self.registry.live.get(bot.pool_id)
        if live is None or not live.connected:
            raise BotUnavailable(f"the agent of {bot.pool_id} is not connected; try again")
        if not self.shipped and "backup" not in live.features:
            raise Conflict(f"the agent of {bot.pool_id} cannot restore; recreate its pool")
        point = choose(await self.points(bot), point_id, at, bot.pool_id)
        async with self.guard.lock:  # no move of this bot (or any), no other restore, meanwhile
            # Looked at again: deleted, moved or held while this restore waited its turn.
            current = self.registry.bots.get(bot.id)
            if current is None:
                raise NotFound(f"bot {bot.id} is gone")
            bot = current
            self._refuse_if_busy(bot)
            with self.guard.bot_moving(bot.id):
                response = await self._restore_held(bot, point, root)
        self.events.emit("bot_restored", pool=bot.pool_id, bot=bot.id, user=bot.user_id,
                         reason=point.id, kept=response.kept)  # fmt: skip
        return {"restorePoint": point.to_json(), "keptAs": response.kept or None}

    def _refuse_if_busy(self, bot: BotRecord) -> None:
        if bot.deleting:
            raise Conflict(f"bot {bot.id} is being deleted")
        self.guard.refuse_if_moving(bot)

    async def _restore_held(
        self, bot: BotRecord, point: RestorePoint, root: Path
    ) -> RestoreResponse:
        held = await self.transfer.hold(bot)
        try:
            if not point.local:
                # Its disk lost: fetched from the bucket now that the bot is held (its
                # agent makes and thins no snapshot of it meanwhile).
                point = await self._fetch(point, held.id, held.pool_id, root)
            if self.shipped:
                response = await self._restore_staged(held, point)
            else:
                response = await self._restore_by_agent(held, point, root)
        finally:
            if self.transfer.staged(bot.id):
                # Its directory could not land back: held (nothing runs it without its
                # files) until the start-up recovery or an operator lands it.
                log.error("bot_restore_left_staged", bot=bot.id)
            else:
                await self.transfer.release(self.registry.bots[bot.id])
        assert isinstance(response, RestoreResponse)
        if response.error:
            raise Conflict(f"bot {bot.id} was not restored: {response.error}")
        log.info("bot_restored", bot=bot.id, point=point.id, kept=response.kept)
        return response

    async def _restore_by_agent(
        self, held: BotRecord, point: RestorePoint, root: Path
    ) -> RestoreResponse:
        """The pool's agent restores from its own directory of the backup target."""
        if point.pool_id != held.pool_id:
            # Written where the bot lived before: its agent reads only its own pool's.
            target = pool_backup_dir(root, held.pool_id)
            assert target is not None
            await asyncio.to_thread(_copy_point, point, target / held.id / point.db)
        request = RestoreRequest(
            self.pools.sessions.next_request_id(), held.id, point.db, point.stamp
        )
        response = await self.pools.sessions.request(held.pool_id, request, RESTORE_TIMEOUT)
        assert isinstance(response, RestoreResponse)
        return response

    async def _restore_staged(self, held: BotRecord, point: RestorePoint) -> RestoreResponse:
        """The held bot's directory taken from its pool into staging, its database replaced
        there by the point (the current one kept aside, as an agent keeps it), and landed
        back: the move's own stage and land steps (controller/moves/transfer.py), so a
        crash between them is the move's (the start-up recovery lands what is staged)."""
        try:
            await self.transfer.stage(held)
        except OSError as exc:
            return RestoreResponse(0, error=f"its directory could not be staged: {exc}")
        stage = self.transfer.staging / held.id
        try:
            kept = await asyncio.to_thread(swap_in, point, stage, stamp_of(self.clock()))
        except (OSError, ValueError) as exc:
            kept, error = "", f"restore failed: {exc}"
        else:
            error = ""
        await self.transfer.place_staged(held)  # whatever happened above: back in its pool
        log.info("bot_restored_through_staging", bot=held.id, point=point.id, error=error)
        return RestoreResponse(0, kept=kept, error=error)

    async def _fetch(
        self, point: RestorePoint, bot_id: str, pool_id: str, root: Path
    ) -> RestorePoint:
        """A point only in the bucket, downloaded into the bot's current pool's directory."""
        assert self.offsite is not None and point.key is not None
        pool_dir = pool_backup_dir(root, pool_id)
        assert pool_dir is not None
        target = pool_dir / bot_id / point.db / point.path.name
        bucket, key = self.offsite.bucket, point.key

        def fetch() -> None:
            target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            bucket.download(key, target, point.size)

        try:
            await asyncio.to_thread(fetch)
        except (BucketError, OSError) as exc:
            # The detail (endpoint, bucket, host paths) is the operator's, not the user's.
            log.error("backup_fetch_failed", bot=bot_id, point=point.id, error=str(exc))
            raise BotUnavailable(
                f"restore point {point.id} could not be fetched from the backup bucket; "
                "try again later or choose another point"
            ) from None
        log.info("backup_fetched", bot=bot_id, point=point.id)
        return replace(point, pool_id=pool_id, path=target, local=True)

    async def stage_latest(self, bot: BotRecord, target: Path) -> list[RestorePoint]:
        """Put the bot's newest restore point of each of its databases into `target` (a bot
        directory being staged for a failover: its own directory is on a lost node), from
        the backup target or the bucket; the points used ([]: it has none, or backups are
        off). OSError or BotUnavailable if one cannot be read or fetched."""
        if self.root is None:
            return []
        chosen = latest(await self.points(bot))
        for n, point in enumerate(chosen):
            if not point.local:
                chosen[n] = point = await self._fetch(point, bot.id, bot.pool_id, self.root)
            await asyncio.to_thread(_place_point, point, target)
        return chosen

    # -- retention ------------------------------------------------------------------------

    def purge(self, bot_id: str) -> None:
        """A bot deleted with purge: its backups go once it is gone from its pool."""
        self.purged.add(bot_id)
        self._wake.set()

    async def run(self) -> None:
        while True:
            try:
                await self.sweep()
            except OSError as exc:
                log.error("backup_sweep_failed", error=str(exc))
            # A purged bot still being deleted is looked at again soon.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), 1.0 if self.purged else SWEEP_INTERVAL)
            self._wake.clear()

    async def sweep(self) -> list[str]:
        """Remove the backups of deleted bots that are due (purged, or past retention); the
        bots whose backups went. One sweep at a time (the loop's, a caller's)."""
        async with self._sweeping:
            return await self._sweep()

    async def _sweep(self) -> list[str]:
        if self.root is None:
            return []
        root = self.root
        known = set(self.registry.bots)

        def scan() -> list[tuple[str, float]]:
            found: dict[str, float] = {}
            for path in (root / "pools").glob("*/*"):
                if path.is_dir() and path.name not in known:
                    found[path.name] = max(found.get(path.name, 0.0), _newest(path))
            return list(found.items())

        due = expired(await asyncio.to_thread(scan), known, self.purged, self.clock(),
                      self.retention)  # fmt: skip
        for bot_id in due:
            for directory in bot_dirs(root, bot_id):
                await asyncio.to_thread(shutil.rmtree, directory, True)
            log.info("bot_backups_removed", bot=bot_id)
        if self.offsite is not None:
            self.purged_in_bucket |= self.purged - known
            due = sorted(set(due) | set(await self._sweep_bucket(known)))
        self.purged &= known  # the rest are gone now, their backups with them
        pools = set(self.registry.pools) | set(self.registry.retiring)
        for directory in (root / "pools").glob("*"):
            if directory.name not in pools:
                with contextlib.suppress(OSError):  # not empty: a moved bot's points
                    directory.rmdir()  # a removed pool's, emptied
        return due

    async def _sweep_bucket(self, known: set[str]) -> list[str]:
        """The bucket's retention: deleted bots' objects as locally, and the agents' thinning
        of restore points (a lost disk's points are thinned in the bucket too)."""
        assert self.offsite is not None
        now = self.clock()
        purged = self.purged | self.purged_in_bucket
        try:
            # No upload round meanwhile: one already reading a purged bot's file would put
            # it back after this listing.
            async with self.offsite.exclusive():
                remote = await self.offsite.listing(fresh=True)
                newest: dict[str, float] = {}
                for key, stored in remote.items():
                    bot_id = bot_of(key)
                    if bot_id is not None and bot_id not in known:
                        newest[bot_id] = max(newest.get(bot_id, 0.0), stored.modified)
                due = expired(newest.items(), known, purged, now, self.retention)
                gone = set(due)
                drop = [k for k in remote if bot_of(k) in gone]
                drop += [
                    k for k in thinned(remote, now, self.retention_days) if bot_of(k) not in gone
                ]
                if drop:
                    await asyncio.to_thread(self.offsite.bucket.delete, drop)
                    self.offsite.forget(drop)
            self.purged_in_bucket.clear()  # every purged bot's objects are gone
        except BucketError as exc:
            log.error("backup_bucket_sweep_failed", error=str(exc))
            return []
        for bot_id in due:
            log.info("bot_backups_removed_from_bucket", bot=bot_id)
        return due


def _place_point(point: RestorePoint, bot_dir: Path) -> None:
    """The point as the bot's database in `bot_dir`, private (its new agent gives the
    directory to the bot's user)."""
    bot_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = bot_dir / f".{point.db}.tmp"
    shutil.copyfile(point.path, tmp)
    tmp.chmod(0o600)
    tmp.replace(bot_dir / point.db)


def swap_in(point: RestorePoint, bot_dir: Path, now_stamp: str) -> str:
    """The point in place of the database in a staged bot directory, checked whole first;
    the database it replaces is kept beside it (its side files with it), as an agent's
    restore keeps it (agent/backups.py). Each step a rename: a crash leaves the old
    database or the restored one. Returns the kept name ("" if there was none)."""
    check_intact(point.path)
    bot_dir.mkdir(parents=True, exist_ok=True, mode=0o700)  # never written: made
    db, aside = bot_dir / point.db, f"{point.db}.before-restore-{now_stamp}"
    tmp = bot_dir / f".{point.db}.restoring"
    shutil.copyfile(point.path, tmp)
    tmp.chmod(0o600)
    kept = ""
    if db.exists() and not db.is_symlink():
        os.link(db, bot_dir / aside)
        kept = aside
    for side in SIDE_FILES:  # the kept copy's, never to be applied to the restored
        with contextlib.suppress(FileNotFoundError):
            (bot_dir / f"{point.db}{side}").rename(bot_dir / f"{aside}{side}")
    tmp.replace(db)
    return kept


def _copy_point(point: RestorePoint, directory: Path) -> None:
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    target = directory / point.path.name
    if not target.exists():
        tmp = directory / f".{point.path.name}.tmp"
        shutil.copyfile(point.path, tmp)
        tmp.chmod(0o600)
        tmp.replace(target)
