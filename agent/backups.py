"""Continuous backups of each bot's trade database, config and strategy, and restores.

Every BACKUP_INTERVAL the agent looks at each bot's FreqTrade database (tradesv3.sqlite,
or tradesv3.dryrun.sqlite in dry-run); one that changed since its last snapshot is copied
with SQLite's online backup API (one read transaction: a consistent copy, whatever the
journal mode, while the bot keeps trading) and written to the pool's backup target as
<target>/<bot>/<database>/<stamp>.sqlite, next to <target>/<bot>/files/ (its config and
strategy as the controller gave them), or sent to the controller, which writes it there
(BACKUP_TRANSPORT, agent/backup_targets.py). Older snapshots are thinned (`to_delete`).

The database is read with the bot's own file-system identity (setfsuid, this thread only):
a bot that replaces its database with a link to another bot's cannot make the agent, which
is root, read that one for it. Snapshots are written as root, private (0600 in 0700
directories): bot users cannot read any backup, their own included.

A target that fails (unmounted, read-only, full; a controller that does not take a
point) makes the round fail: the state says so
in every heartbeat (the controller turns it into an event and a metric) and the next round
tries again. Nothing of this touches a bot's process.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import sqlite3
import time
import urllib.parse
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import structlog

from agent.backup_targets import MountTarget, PointTarget
from agent.files import copy_in, make_bot_dir
from common.protocol import BackupState, BotSpec
from common.restore_points import DB_NAMES, SIDE_FILES, check_intact, stamp_of
from common.states import RunState

log = structlog.get_logger("agent.backups")
Owner = tuple[int, int] | None

_libc = ctypes.CDLL(None, use_errno=True)


@contextlib.contextmanager
def file_identity(owner: Owner) -> Iterator[None]:
    """This thread opens files as `owner` (the kernel drops root's file capabilities for
    it meanwhile); other threads are unaffected. No change where bots have no users."""
    if owner is None or os.geteuid() != 0:
        yield
        return
    uid, gid = owner
    _libc.setfsgid(gid)
    _libc.setfsuid(uid)
    try:
        if _libc.setfsuid(uid) != uid:  # setfsuid answers with the identity in force
            raise PermissionError(f"cannot take the file identity of uid {uid}")
        yield
    finally:
        _libc.setfsuid(0)
        _libc.setfsgid(0)


def signature(db: Path) -> tuple[int, ...] | None:
    """What changes when the database does (its file and its WAL); None if there is none."""
    try:
        st = os.stat(db)
    except FileNotFoundError:
        return None
    sig = [st.st_ino, st.st_size, st.st_mtime_ns]
    with contextlib.suppress(FileNotFoundError):
        wal = os.stat(f"{db}-wal")
        sig += [wal.st_size, wal.st_mtime_ns]
    return tuple(sig)


def snapshot(db: Path) -> bytes:
    """A consistent copy of a live database: SQLite's backup API, in one read transaction."""
    uri = f"file:{urllib.parse.quote(str(db))}?mode=ro"
    source = sqlite3.connect(uri, uri=True, timeout=5)
    copy = sqlite3.connect(":memory:")
    try:
        source.backup(copy)
        return copy.serialize()
    finally:
        source.close()
        copy.close()


@dataclass(frozen=True, slots=True)
class BackupOptions:
    target: Path | None  # this pool's backup directory (the runtime makes it); None: sent
    interval: float = 5.0
    retention_days: int = 30


class Backups:
    def __init__(
        self, options: BackupOptions, bots_dir: Path, owner_for: Callable[[int], Owner],
        on_change: Callable[[], None] = lambda: None, clock: Callable[[], float] = time.time,
        sink: PointTarget | None = None,
    ) -> None:  # fmt: skip
        self.options = options
        self.target = options.target  # None: points go to the controller (`sink`)
        if sink is None:
            assert options.target is not None
            sink = MountTarget(options.target, options.retention_days)
        self.sink = sink
        self.bots_dir = bots_dir
        self.owner_for = owner_for  # a bot's port -> its slot user's (uid, gid)
        self.on_change = on_change
        self.clock = clock
        self.state = BackupState()
        self.specs: list[BotSpec] = []
        # Each database's signature when its newest point was taken, and that point's stamp,
        # once the target has it: anything else is "changed", for the next round.
        self._seen: dict[tuple[str, str], tuple[int, ...]] = {}
        self._newest: dict[tuple[str, str], str] = {}
        # One thread does every backup and restore: never a snapshot of a database being
        # restored, and the file identity of one bot never leaks into other work.
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="backups")

    @property
    def where(self) -> str:
        return str(self.target) if self.target is not None else "controller"

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.options.interval)
            await self.round_now()

    async def round_now(self) -> None:
        """A round at once (one at a time, on the backups' thread): after a fence stopped
        the bots, so their last trades reach the target if it can still be written."""
        before = (self.state.ok, self.state.error)
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._executor, self.round, list(self.specs))
        if (self.state.ok, self.state.error) != before:
            self.on_change()

    def round(self, specs: list[BotSpec]) -> None:
        """Back up every bot that changed; the state says whether the target took it all.
        The first failure ends the round (a target cut off is tried once a round)."""
        ids = {spec.id for spec in specs}  # bots gone from the pool are forgotten
        self._seen = {key: sig for key, sig in self._seen.items() if key[0] in ids}
        self._newest = {key: stamp for key, stamp in self._newest.items() if key[0] in ids}
        self.sink.forget(ids)
        try:
            self.sink.check()
            for spec in specs:
                if spec.run != RunState.HELD:
                    self.back_up(spec)
        except OSError as exc:
            self.sink.failed()
            self.state.failures += 1
            self.state.ok, self.state.error = False, (exc.strerror or str(exc))[:500]
            if self.state.failures in (1, 10, 100) or self.state.failures % 1000 == 0:
                log.error("backup_failed", target=self.where, error=self.state.error,
                          failures=self.state.failures)  # fmt: skip
            return
        if not self.state.ok:
            log.info("backup_recovered", target=self.where)
        self.state.ok, self.state.error, self.state.failures = True, "", 0
        self.state.last_ok = self.clock()

    def back_up(self, spec: BotSpec) -> None:
        self.sink.files(spec.id, spec.files)
        owner = self.owner_for(spec.port)
        for name in DB_NAMES:
            key = (spec.id, name)
            db = self.bots_dir / spec.id / name
            try:
                with file_identity(owner):
                    sig = signature(db)
                    unchanged = sig is not None and self._seen.get(key) == sig
                    data = None if sig is None or unchanged else snapshot(db)
            except (sqlite3.Error, OSError) as exc:
                # The bot's database, not the target: the bot's problem, logged; next round.
                log.warning("backup_snapshot_failed", bot=spec.id, db=name, error=str(exc))
                continue
            if unchanged:
                # The database still equals its newest point: the CHECKED mark says since
                # when, so a failover knows its trades were all in that point then.
                if not self.sink.checked(spec.id, name, self._newest[key], self.clock()):
                    self._seen.pop(key, None)  # the target lost it: taken again next round
            elif data is not None:
                now = self.clock()
                stamp = stamp_of(now)
                self.sink.point(spec.id, name, stamp, data, now)
                self._seen[key], self._newest[key] = sig, stamp

    async def restore(self, bot_id: str, port: int, db: str, point: str) -> str:
        """Put a stopped bot's database back from a snapshot; returns where the one it
        replaces was kept (in the bot's directory). OSError/ValueError if it cannot."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(
            self._executor, self._restore, bot_id, self.owner_for(port), db, point
        )

    def _restore(self, bot_id: str, owner: Owner, db: str, point: str) -> str:
        if self.target is None:
            raise ValueError("this pool's restore points are the controller's, not its own")
        """Crash-safe at every step: the snapshot, checked whole, is copied next to the
        database first; the database being replaced is kept (a hard link, with its side
        files renamed to go with it); the copy then replaces it in one rename. Interrupted
        anywhere, the bot finds its old database or the restored one, never none."""
        source = self.target / bot_id / db / f"{point}.sqlite"
        check_intact(source)
        bot_dir = self.bots_dir / bot_id
        make_bot_dir(bot_dir, owner)  # gone with a lost disk: made again, empty
        aside = f".before-restore-{stamp_of(self.clock())}"
        tmp = f".{db}.restoring"
        fd = os.open(bot_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
        kept = ""
        try:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp, dir_fd=fd)  # left by an interrupted restore
            copy_in(fd, tmp, source, owner)
            with contextlib.suppress(FileNotFoundError):
                # A link never follows: whatever is there is only kept under another name.
                os.link(db, db + aside, src_dir_fd=fd, dst_dir_fd=fd, follow_symlinks=False)
                kept = db + aside
            for side in SIDE_FILES:  # the kept copy's, never to be applied to the restored
                with contextlib.suppress(FileNotFoundError):
                    os.rename(db + side, db + aside + side, src_dir_fd=fd, dst_dir_fd=fd)
            os.rename(tmp, db, src_dir_fd=fd, dst_dir_fd=fd)
            os.fsync(fd)
        finally:
            os.close(fd)
        self._seen.pop((bot_id, db), None)
        log.info("bot_database_restored", bot=bot_id, db=db, point=point, kept=kept)
        return kept

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
