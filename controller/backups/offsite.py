"""The off-host copy of the backup target in an S3-compatible bucket, driven by the
controller: the agents write locally as always; each new restore point and each changed
config or strategy is uploaded, newest first, a bounded number per round. A bucket that
cannot be reached is an event and a metric, retried with a growing pause; nothing stops.

Pure parts decide (what to upload, what the bucket's retention drops); the loop acts.
"""

from __future__ import annotations

import asyncio
import errno
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import structlog
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from common.ids import is_valid_id
from common.protocol import ProtocolError, check_restore_point
from common.restore_points import DB_NAMES, to_delete
from controller.backups.bucket import Bucket, BucketError, StoredObject
from controller.events import EventBus

log = structlog.get_logger("controller.backups.offsite")
MAX_UPLOADS_PER_ROUND = 100
MAX_PAUSE = 300.0  # the longest wait between rounds while the bucket fails


def scan_local(root: Path) -> dict[str, float]:
    """Every backup file under root/pools, by its key (path relative to root): its mtime.
    Temporary files (a leading dot) are not finished: left out. Blocking."""
    found = {}
    for path in (root / "pools").rglob("*"):
        if path.name.startswith(".") or not path.is_file() or path.is_symlink():
            continue
        try:
            found[path.relative_to(root).as_posix()] = path.stat().st_mtime
        except OSError:
            continue  # thinned since the listing
    return found


def pending(local: dict[str, float], remote: dict[str, float]) -> list[str]:
    """What to upload: files the bucket lacks or holds older, the newest first."""
    todo = [k for k, mtime in local.items() if k not in remote or mtime > remote[k]]
    return sorted(todo, key=lambda k: local[k], reverse=True)


def pause(failures: int, interval: float) -> float:
    """The wait before the next round: the interval, doubled for each failed round."""
    return min(interval * 2 ** min(failures, 16), max(MAX_PAUSE, interval))


def split_key(key: str) -> tuple[str, str, str, str] | None:
    """(pool, bot, database, stamp) of a restore point's key, or None for any other key."""
    parts = key.split("/")
    if len(parts) != 5 or parts[0] != "pools" or not parts[4].endswith(".sqlite"):
        return None
    _, pool, bot, db, name = parts
    stamp = name[: -len(".sqlite")]
    try:
        check_restore_point(db, stamp)
    except ProtocolError:
        return None
    if db not in DB_NAMES or not is_valid_id(pool) or not is_valid_id(bot):
        return None
    return pool, bot, db, stamp


def thinned(keys: Iterable[str], now: float, retention_days: int) -> list[str]:
    """The restore points the bucket drops, by the agents' own thinning rule, per pool,
    bot and database (the bucket keeps what a lost disk's directory would have kept)."""
    groups: dict[tuple[str, str, str], list[str]] = defaultdict(list)
    for key in keys:
        if (parts := split_key(key)) is not None:
            groups[parts[:3]].append(parts[3])
    return sorted(
        f"pools/{pool}/{bot}/{db}/{stamp}.sqlite"
        for (pool, bot, db), stamps in groups.items()
        for stamp in to_delete(stamps, now, retention_days)
    )


def bot_of(key: str) -> str | None:
    parts = key.split("/")
    return parts[2] if len(parts) > 3 and parts[0] == "pools" else None


class OffsiteCopy(Collector):
    def __init__(
        self, root: Path, bucket: Bucket, events: EventBus, interval: float,
        clock: Callable[[], float] = time.time,
    ) -> None:  # fmt: skip
        self.root = root
        self.bucket = bucket
        self.events = events
        self.interval = interval
        self.clock = clock
        self.remote: dict[str, StoredObject] | None = None  # the bucket's, as last listed
        self.error = ""  # non-empty while the bucket fails
        self.failures = 0  # times the bucket began to fail
        self.failed_rounds = 0  # in a row
        self.uploads = 0
        self.last_ok = 0.0
        self._round = asyncio.Lock()  # one round at a time (the loop's, a test's)
        self._listing: asyncio.Future[list[StoredObject]] | None = None  # under way
        self.sent: dict[str, float] = {}  # key: the mtime of the file uploaded there

    async def run(self) -> None:
        while True:  # the agents write their first snapshots meanwhile
            await asyncio.sleep(pause(self.failed_rounds, self.interval))
            try:
                await self.sync()
            except Exception:  # a bug here must not end the copying for good
                log.exception("backup_offsite_round_crashed")

    async def listing(self, fresh: bool = False) -> dict[str, StoredObject]:
        """The bucket's objects by key, as last listed, or listed now (BucketError): the
        sweep lists afresh, so objects removed behind our back are uploaded again. One
        listing at a time, shared by every caller waiting for it; the last one serves the
        others meanwhile."""
        if fresh or self.remote is None:
            if self._listing is None:
                self._listing = asyncio.ensure_future(asyncio.to_thread(self.bucket.list))
            task = self._listing
            try:
                objects = await asyncio.shield(task)
            finally:
                if task.done() and self._listing is task:
                    self._listing = None
            self.remote = {o.key: o for o in objects}
        return self.remote

    async def points(self, bot_id: str) -> list[tuple[str, str, str, str, int]]:
        """The bot's restore points in the bucket: (pool, bot, database, stamp, size). While
        the bucket fails and is not listed, BucketError at once (no wait on a dead endpoint)."""
        if self.remote is None and self.error:
            raise BucketError(self.error)
        found = []
        for key, stored in (await self.listing()).items():
            parts = split_key(key)
            if parts is not None and parts[1] == bot_id:
                found.append((*parts, stored.size))
        return found

    def exclusive(self) -> asyncio.Lock:
        """Held, no upload round runs (the sweep's listing and deletes)."""
        return self._round

    async def sync(self) -> int:
        """One round: upload what the bucket lacks. The number uploaded; never raises."""
        async with self._round:
            return await self._sync()

    async def _sync(self) -> int:
        try:
            remote = await self.listing()
            local = await asyncio.to_thread(scan_local, self.root)
            # What this process uploaded is compared by the file's own time; the bucket's
            # time (another clock, whole seconds) only for what it did not upload.
            todo = pending(local, {k: self.sent.get(k, o.modified) for k, o in remote.items()})
            uploaded = 0
            for key in todo[:MAX_UPLOADS_PER_ROUND]:
                try:
                    size = await asyncio.to_thread(self.bucket.upload, key, self.root / key)
                except OSError as exc:
                    # Thinned by its agent meanwhile, or made a link (never followed, never
                    # copied): the others still go.
                    if exc.errno not in (errno.ENOENT, errno.ELOOP):
                        raise
                    continue
                remote[key] = StoredObject(key, size, local[key])
                self.sent[key] = local[key]
                uploaded += 1
                self.uploads += 1
        except (BucketError, OSError) as exc:
            self._failed(str(exc) if isinstance(exc, BucketError) else exc.strerror or "")
            return 0
        self._ok(complete=len(todo) <= MAX_UPLOADS_PER_ROUND)
        return uploaded

    def forget(self, keys: Iterable[str]) -> None:
        for key in keys:
            self.sent.pop(key, None)
            if self.remote is not None:
                self.remote.pop(key, None)

    def _failed(self, error: str) -> None:
        self.remote = None  # listed again once it answers
        self.failed_rounds += 1
        if not self.error:
            self.failures += 1
            self.events.emit(
                "backup_offsite_failed", reason=error, bucket=self.bucket.config.bucket
            )
            log.error("backup_offsite_failed", error=error)
        self.error = error or "failed"

    def _ok(self, complete: bool) -> None:
        if self.error:
            self.events.emit("backup_offsite_recovered", bucket=self.bucket.config.bucket)
            log.info("backup_offsite_recovered")
        self.error, self.failed_rounds = "", 0
        if complete:  # the bucket holds every file there was
            self.last_ok = self.clock()

    def collect(self) -> Iterator[Metric]:
        yield GaugeMetricFamily(
            "ftpool_backup_offsite_failing",
            "1 while the backup bucket fails",
            value=int(bool(self.error)),
        )
        yield CounterMetricFamily(
            "ftpool_backup_offsite_failures", "Times the backup bucket began to fail",
            value=self.failures,
        )  # fmt: skip
        yield CounterMetricFamily(
            "ftpool_backup_offsite_uploads", "Files uploaded to the backup bucket",
            value=self.uploads,
        )  # fmt: skip
        if self.last_ok:
            yield GaugeMetricFamily(
                "ftpool_backup_offsite_age_seconds",
                "Seconds since the last round that left the bucket holding every backup file",
                value=round(self.clock() - self.last_ok, 3),
            )
