"""Continuous backups of each bot's trade database, config and strategy, and restores.

Every BACKUP_INTERVAL the agent looks at each bot's FreqTrade database (tradesv3.sqlite,
or tradesv3.dryrun.sqlite in dry-run); one that changed since its last snapshot is copied
with SQLite's online backup API (one read transaction: a consistent copy, whatever the
journal mode, while the bot keeps trading) and written to the pool's backup target as
<target>/<bot>/<database>/<stamp>.sqlite, next to <target>/<bot>/files/ (its config and
strategy as the controller gave them). Older snapshots are thinned (`to_delete`).

The database is read with the bot's own file-system identity (setfsuid, this thread only):
a bot that replaces its database with a link to another bot's cannot make the agent, which
is root, read that one for it. Snapshots are written as root, private (0600 in 0700
directories): bot users cannot read any backup, their own included.

A target that fails (unmounted, read-only, full) makes the round fail: the state says so
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
from datetime import UTC, datetime
from pathlib import Path

import structlog

from agent.files import copy_in, make_bot_dir
from agent.pool_files import write_if_changed
from common.protocol import BackupState, BotSpec, check_relpath
from common.states import RunState

log = structlog.get_logger("agent.backups")
# FreqTrade's own database names (db_url is a protected key: it is never anything else).
DB_NAMES = ("tradesv3.sqlite", "tradesv3.dryrun.sqlite")
SIDE_FILES = ("-journal", "-wal", "-shm")
# Beside a database's snapshots: the stamp of its newest, and as its mtime the last round
# that found the database unchanged since (a leading dot: never uploaded to the bucket).
CHECKED = ".checked"
STAMP = "%Y%m%dT%H%M%S"
KEEP_RECENT = 12  # the newest snapshots, always kept
KEEP_HOURLY = 24  # then the newest of each of the last 24 hours
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


def stamp_of(t: float) -> str:
    """A snapshot's name: its UTC time to the microsecond, sortable as text."""
    return time.strftime(STAMP, time.gmtime(t)) + f".{int(t * 1e6) % 1_000_000:06d}Z"


def time_of(stamp: str) -> float:
    return datetime.strptime(stamp, STAMP + ".%fZ").replace(tzinfo=UTC).timestamp()


def check_intact(path: Path) -> None:
    """ValueError unless the file is a whole SQLite database (a truncated or damaged
    snapshot, from a full disk or a bucket, is never restored)."""
    uri = f"file:{urllib.parse.quote(str(path))}?mode=ro&immutable=1"
    try:
        db = sqlite3.connect(uri, uri=True)
        try:
            result = db.execute("PRAGMA quick_check").fetchone()
        finally:
            db.close()
    except sqlite3.Error as exc:
        raise ValueError(f"the restore point is not a readable database: {exc}") from None
    if result != ("ok",):
        raise ValueError("the restore point is damaged (quick_check failed)")


def to_delete(stamps: list[str], now: float, retention_days: int) -> list[str]:
    """The snapshots thinning drops: all but the newest KEEP_RECENT, the newest of each hour
    of the last KEEP_HOURLY hours, and the newest of each day within the retention."""
    keep, hours, days = set(sorted(stamps)[-KEEP_RECENT:]), set(), set()
    for stamp in sorted(stamps, reverse=True):
        age = now - time_of(stamp)
        if age < KEEP_HOURLY * 3600 and stamp[:11] not in hours:
            hours.add(stamp[:11])
            keep.add(stamp)
        elif age < retention_days * 86400 and stamp[:8] not in days:
            days.add(stamp[:8])
            keep.add(stamp)
    return sorted(s for s in stamps if s not in keep)


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
    target: Path  # this pool's backup directory (it must exist: the runtime makes it)
    interval: float = 5.0
    retention_days: int = 30


class Backups:
    def __init__(
        self, options: BackupOptions, bots_dir: Path, owner_for: Callable[[int], Owner],
        on_change: Callable[[], None] = lambda: None, clock: Callable[[], float] = time.time,
    ) -> None:  # fmt: skip
        self.options = options
        self.target = options.target
        self.bots_dir = bots_dir
        self.owner_for = owner_for  # a bot's port -> its slot user's (uid, gid)
        self.on_change = on_change
        self.clock = clock
        self.state = BackupState()
        self.specs: list[BotSpec] = []
        self._seen: dict[tuple[str, str], tuple[int, ...]] = {}
        self._files: dict[str, dict[str, bytes]] = {}  # each bot's files as last written
        # One thread does every backup and restore: never a snapshot of a database being
        # restored, and the file identity of one bot never leaks into other work.
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="backups")

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
        """Back up every bot that changed; the state says whether the target took it all."""
        ids = {spec.id for spec in specs}  # bots gone from the pool are forgotten
        self._seen = {key: sig for key, sig in self._seen.items() if key[0] in ids}
        self._files = {bot: files for bot, files in self._files.items() if bot in ids}
        try:
            if not self.target.is_dir():
                raise FileNotFoundError(f"backup target {self.target} is missing")
            for spec in specs:
                if spec.run != RunState.HELD:
                    self.back_up(spec)
        except OSError as exc:
            self._files.clear()  # whatever reached a failing target is written again
            self.state.failures += 1
            self.state.ok, self.state.error = False, (exc.strerror or str(exc))[:500]
            if self.state.failures in (1, 10, 100) or self.state.failures % 1000 == 0:
                log.error("backup_failed", target=str(self.target), error=self.state.error,
                          failures=self.state.failures)  # fmt: skip
            return
        if not self.state.ok:
            log.info("backup_recovered", target=str(self.target))
        self.state.ok, self.state.error, self.state.failures = True, "", 0
        self.state.last_ok = self.clock()

    def back_up(self, spec: BotSpec) -> None:
        bot_target = self.target / spec.id
        try:
            bot_target.mkdir(mode=0o700)
            self._files.pop(spec.id, None)  # a new target (or a lost one): write them again
        except FileExistsError:
            pass
        if self._files.get(spec.id) != spec.files:
            for rel, content in spec.files.items():
                path = bot_target / "files"
                for part in check_relpath(rel).split("/"):
                    path.mkdir(mode=0o700, exist_ok=True)  # each one private, not the umask's
                    path = path / part
                write_if_changed(path, content, 0o600)
            self._files[spec.id] = spec.files
        owner = self.owner_for(spec.port)
        for name in DB_NAMES:
            db = self.bots_dir / spec.id / name
            try:
                with file_identity(owner):
                    sig = signature(db)
                    unchanged = sig is not None and self._seen.get((spec.id, name)) == sig
                    data = None if sig is None or unchanged else snapshot(db)
            except (sqlite3.Error, OSError) as exc:
                # The bot's database, not the target: the bot's problem, logged; next round.
                log.warning("backup_snapshot_failed", bot=spec.id, db=name, error=str(exc))
                continue
            if unchanged:
                self._checked(bot_target / name)
            elif data is not None:
                self._write(bot_target / name, data)
                self._seen[(spec.id, name)] = sig

    def _checked(self, directory: Path) -> None:
        """The database still equals its newest snapshot: the CHECKED mark says since when
        (its mtime), so a failover knows its trades were all in that snapshot then."""
        now = self.clock()
        with contextlib.suppress(FileNotFoundError):  # none yet: an agent from before it
            os.utime(directory / CHECKED, (now, now), follow_symlinks=False)

    def _write(self, directory: Path, data: bytes) -> None:
        directory.mkdir(mode=0o700, exist_ok=True)
        now = self.clock()
        name = stamp_of(now)
        tmp = directory / f".{name}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, directory / f"{name}.sqlite")
        write_if_changed(directory / CHECKED, name.encode(), 0o600)
        os.utime(directory / CHECKED, (now, now), follow_symlinks=False)
        stamps = [p.name[: -len(".sqlite")] for p in directory.glob("*.sqlite")]
        for old in to_delete(stamps, now, self.options.retention_days):
            (directory / f"{old}.sqlite").unlink(missing_ok=True)

    async def restore(self, bot_id: str, port: int, db: str, point: str) -> str:
        """Put a stopped bot's database back from a snapshot; returns where the one it
        replaces was kept (in the bot's directory). OSError/ValueError if it cannot."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(
            self._executor, self._restore, bot_id, self.owner_for(port), db, point
        )

    def _restore(self, bot_id: str, owner: Owner, db: str, point: str) -> str:
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
