"""Legacy bots ftpool never provisioned: one plain container per bot, found on the host.

Before pools, each bot ran in a container `freqtrade-<instanceId>` with its directory at
`BOT_BASE_DIR/<userId>/<instanceId>/` (config.json, user_data/, the trade database). Such
a bot is discovered by both: a container of that name without ftpool's pool label, and
exactly one directory of its id holding a config.json. Discovered bots are shown, and the
migration tool imports them; nothing else touches them. Docker calls block, so each runs
in a worker thread.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import docker
import docker.errors
import structlog

from common.ids import is_valid_id
from controller.errors import FtpoolError
from controller.runtimes.docker import LABEL_POOL, in_thread

log = structlog.get_logger("controller.legacy")
PREFIX = "freqtrade-"
# BOT_BASE_DIR's own directories: never a user's.
RESERVED = frozenset({"pools", "archive", "migrating", "migration-backups"})
DISCOVERY_MAX_AGE = 5.0  # seconds a listing serves views (status, bot info), not migration
STOP_TIMEOUT = 60  # FreqTrade closes its database and exchange sessions on SIGTERM


@dataclass(frozen=True, slots=True)
class LegacyBot:
    id: str
    user_id: str
    container: str
    state: str  # Docker's: running, exited, created, ...
    directory: Path  # as the controller sees it
    port: int | None  # its API port, from its config.json

    def view(self) -> dict[str, Any]:
        return {
            "instanceId": self.id, "userId": self.user_id, "containerName": self.container,
            "state": self.state, "directory": str(self.directory), "port": self.port,
        }  # fmt: skip


def _api_port(config_file: Path) -> int | None:
    try:
        port = json.loads(config_file.read_text()).get("api_server", {}).get("listen_port")
    except (OSError, ValueError, AttributeError):
        return None
    return port if isinstance(port, int) else None


def find_directory(base_dir: Path, bot_id: str) -> Path | None:
    """BOT_BASE_DIR/<userId>/<bot_id>/ holding a config.json; None unless exactly one."""
    found = [
        p.parent
        for p in base_dir.glob(f"*/{bot_id}/config.json")
        if is_valid_id(p.parent.parent.name)
        and p.parent.parent.name not in RESERVED
        and not p.parent.is_symlink()
    ]
    return found[0] if len(found) == 1 else None


class LegacyContainers:
    def __init__(self, client: Callable[[], docker.DockerClient], base_dir: Path) -> None:
        self._client = client
        self.base_dir = base_dir
        self._last: tuple[float, dict[str, LegacyBot]] = (0.0, {})

    async def discover(self, max_age: float = 0.0) -> dict[str, LegacyBot]:
        """Bot id → every legacy bot on the host; a container without its directory is
        logged and left out (it cannot be told whose it is). A listing up to max_age
        seconds old may be reused: views must not cost a Docker listing each."""
        taken, last = self._last
        if max_age and time.monotonic() - taken < max_age:
            return last

        def discover() -> dict[str, LegacyBot]:
            found: dict[str, LegacyBot] = {}
            containers = self._client().containers.list(all=True, filters={"name": f"^{PREFIX}"})
            for c in containers:
                bot_id = c.name[len(PREFIX) :]
                if LABEL_POOL in c.labels or not is_valid_id(bot_id):
                    continue  # ftpool's own pools and legacy bots, or not a bot at all
                directory = find_directory(self.base_dir, bot_id)
                if directory is None:
                    log.warning("legacy_container_without_directory", container=c.name)
                    continue
                found[bot_id] = LegacyBot(
                    id=bot_id, user_id=directory.parent.name, container=c.name, state=c.status,
                    directory=directory, port=_api_port(directory / "config.json"),
                )  # fmt: skip
            return found

        found = await in_thread(discover)
        self._last = (time.monotonic(), found)
        return found

    async def known_ids(self) -> set[str]:
        """Ids of the legacy bots on the host (a listing up to DISCOVERY_MAX_AGE old); none
        when Docker cannot be asked: provisioning goes on (a pool's creation may fail)."""
        try:
            return set(await self.discover(DISCOVERY_MAX_AGE))
        except FtpoolError as exc:
            log.warning("legacy_discovery_failed", error=str(exc))
            return set()

    async def state(self, name: str) -> str:
        """Docker's state of the container, or "missing"."""

        def state() -> str:
            try:
                return self._client().containers.get(name).status
            except docker.errors.NotFound:
                return "missing"

        return await in_thread(state)

    async def spec(self, name: str) -> dict[str, Any]:
        """The container as Docker describes it (kept with the bot's backup)."""
        return await in_thread(lambda: self._client().containers.get(name).attrs)

    async def stop(self, name: str) -> None:
        """Stop it for good: without its restart policy, so that neither a Docker restart
        nor a reboot brings the legacy copy back beside the pooled one."""

        def stop() -> None:
            container = self._client().containers.get(name)
            container.update(restart_policy={"Name": "no"})
            container.stop(timeout=STOP_TIMEOUT)

        await in_thread(stop)
        log.info("legacy_container_stopped", container=name)

    async def restore(self, name: str, policy: dict[str, Any] | None, start: bool) -> None:
        """Give it its restart policy back (from its backup), and start it if asked."""

        def restore() -> None:
            container = self._client().containers.get(name)
            if policy and policy.get("Name"):
                retries = policy.get("MaximumRetryCount", 0)
                container.update(restart_policy={"Name": policy["Name"],
                                                 "MaximumRetryCount": retries})  # fmt: skip
            if start:
                container.start()

        await in_thread(restore)
        log.info("legacy_container_restored", container=name, started=start)

    async def remove(self, name: str) -> None:
        def remove() -> None:
            with contextlib.suppress(docker.errors.NotFound):
                self._client().containers.get(name).remove(force=True)

        await in_thread(remove)
        log.info("legacy_container_removed", container=name)
