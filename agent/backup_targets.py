"""Where a pool's snapshots go (BACKUP_TRANSPORT): its directory of the backup target, or
the controller over the network. agent/backups.py decides what to write; these write it.

- MountTarget: the pool's directory of BACKUP_DIR, bound at /backup (the local and docker
  runtimes, or a network file system every node mounts): points, the CHECKED mark and
  each bot's files/ (its config and strategy) written there, as root, private.
- ControllerTarget: each new point is sent to the controller, PUT
  /api/agents/backups/<pool>/<bot>/<database>@<stamp> with the pool's token and the
  body's sha256; a round that finds a database unchanged sends the cheap POST .../checked
  instead. BACKUP_DIR is then only on the controller's host, which keeps, thins and
  uploads the points (controller/backups/receive.py); the bots' files are its own
  already (the desired state), so they are not sent back.

Nothing is queued: a point that could not be sent is not kept. The database is simply
still "changed" for the next round, which snapshots it anew and sends that (the newest
wins); a round stops at its first failure. So an agent cut off from the controller holds
no backlog, in memory or on disk, however long the partition.
"""

from __future__ import annotations

import hashlib
import json
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from agent.pool_files import write_if_changed
from common.bot_archive import SHA_HEADER
from common.protocol import check_relpath
from common.restore_points import commit_point, mark_checked, write_private

TIMEOUT = 60.0  # one request: a snapshot of some MB on a slow link, or a silent controller


class PointTarget(Protocol):
    def check(self) -> None:
        """OSError if nothing can be written now (the round fails)."""

    def failed(self) -> None:
        """A round failed: whatever it wrote may be gone."""

    def forget(self, keep: set[str]) -> None:
        """Only these bots are the pool's now."""

    def files(self, bot_id: str, files: dict[str, bytes]) -> None: ...

    def point(self, bot_id: str, db: str, stamp: str, data: bytes, now: float) -> None: ...

    def checked(self, bot_id: str, db: str, stamp: str, now: float) -> bool:
        """The database still equals its newest point `stamp`; False if the target does
        not have that point (the database is to be snapshotted again)."""


class MountTarget:
    def __init__(self, root: Path, retention_days: int) -> None:
        self.root = root
        self.retention_days = retention_days
        self._files: dict[str, dict[str, bytes]] = {}  # each bot's files as last written

    def check(self) -> None:
        if not self.root.is_dir():
            raise FileNotFoundError(f"backup target {self.root} is missing")

    def failed(self) -> None:
        self._files.clear()  # whatever reached a failing target is written again

    def forget(self, keep: set[str]) -> None:
        self._files = {bot: files for bot, files in self._files.items() if bot in keep}

    def _bot_dir(self, bot_id: str) -> Path:
        bot_target = self.root / bot_id
        try:
            bot_target.mkdir(mode=0o700)
            self._files.pop(bot_id, None)  # a new target (or a lost one): written again
        except FileExistsError:
            pass
        return bot_target

    def files(self, bot_id: str, files: dict[str, bytes]) -> None:
        bot_target = self._bot_dir(bot_id)
        if self._files.get(bot_id) == files:
            return
        for rel, content in files.items():
            path = bot_target / "files"
            for part in check_relpath(rel).split("/"):
                path.mkdir(mode=0o700, exist_ok=True)  # each one private, not the umask's
                path = path / part
            write_if_changed(path, content, 0o600)
        self._files[bot_id] = files

    def point(self, bot_id: str, db: str, stamp: str, data: bytes, now: float) -> None:
        directory = self._bot_dir(bot_id) / db
        directory.mkdir(mode=0o700, exist_ok=True)
        tmp = directory / f".{stamp}.tmp"
        write_private(tmp, data)
        commit_point(directory, tmp, stamp, now, self.retention_days)

    def checked(self, bot_id: str, db: str, stamp: str, now: float) -> bool:
        mark_checked(self.root / bot_id / db, now)
        return True


def agent_url(controller_url: str, path: str) -> str:
    """The controller's /api/agents/<path> beside its WebSocket's URL (ws -> http)."""
    parts = urllib.parse.urlsplit(controller_url)
    scheme = {"ws": "http", "wss": "https"}.get(parts.scheme, parts.scheme)
    base = parts.path.removesuffix("/ws")
    return urllib.parse.urlunsplit((scheme, parts.netloc, f"{base}/{path}", "", ""))


class ShipError(OSError):
    """The controller did not take a point or a mark (unreachable, or it refused)."""


Send = Callable[[urllib.request.Request], tuple[int, bytes]]


# Straight to the controller, as the WebSocket goes: no proxy from the environment.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def _send(request: urllib.request.Request) -> tuple[int, bytes]:
    """The status and (at most 4 KiB of) the body of the answer."""
    try:
        with _OPENER.open(request, timeout=TIMEOUT) as response:
            return response.status, response.read(4096)
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, exc.read(4096)


class ControllerTarget:
    def __init__(self, controller_url: str, pool_id: str, token: str, send: Send = _send) -> None:
        self.base = agent_url(controller_url, f"backups/{pool_id}")
        self._auth = f"Bearer {token}"
        self.send = send

    def check(self) -> None:
        pass  # the first request says

    def failed(self) -> None:
        pass

    def forget(self, keep: set[str]) -> None:
        pass

    def files(self, bot_id: str, files: dict[str, bytes]) -> None:
        pass  # the controller's own already

    def _request(self, path: str, data: bytes, headers: dict[str, str]) -> tuple[int, bytes]:
        url = f"{self.base}/{urllib.parse.quote(path, safe='/@')}"
        method = "POST" if path.endswith("/checked") else "PUT"
        headers = {"Authorization": self._auth, **headers}
        request = urllib.request.Request(url, data=data, method=method, headers=headers)
        try:
            return self.send(request)
        except (OSError, ValueError) as exc:  # unreachable, reset, timed out
            reason = getattr(exc, "reason", exc)
            raise ShipError(f"the controller is unreachable: {reason}") from None

    def point(self, bot_id: str, db: str, stamp: str, data: bytes, now: float) -> None:
        headers = {SHA_HEADER: hashlib.sha256(data).hexdigest(),
                   "Content-Type": "application/octet-stream"}  # fmt: skip
        status, body = self._request(f"{bot_id}/{db}@{stamp}", data, headers)
        if status not in (200, 201):
            raise ShipError(f"the controller refused a restore point ({status}: {_said(body)})")

    def checked(self, bot_id: str, db: str, stamp: str, now: float) -> bool:
        data = json.dumps({"at": now}).encode()
        status, body = self._request(f"{bot_id}/{db}@{stamp}/checked", data,
                                     {"Content-Type": "application/json"})  # fmt: skip
        if status in (404, 409):  # it has not that point (any more) as the newest
            return False
        if status != 200:
            raise ShipError(f"the controller refused a mark ({status}: {_said(body)})")
        return True


def _said(body: bytes) -> str:
    try:
        return str(json.loads(body).get("error", ""))[:200]
    except (ValueError, AttributeError):
        return body[:200].decode(errors="replace")
