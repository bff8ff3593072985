"""Legacy bots ftpool never provisioned: one plain container per bot, found on the host.

Before pools, each bot ran in a container `freqtrade-<instanceId>` with its directory at
`BOT_BASE_DIR/<userId>/<instanceId>/` (config.json, user_data/, the trade database). Such
a bot is discovered by both: a container of that name without ftpool's pool label, and
exactly one directory of its id holding a config.json. Discovered bots are shown, and the
migration tool imports them; nothing else touches them. Docker calls block, so each runs
in a worker thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import docker
import docker.errors
import structlog

from common.ids import is_valid_id
from controller.errors import RuntimeFailure
from controller.runtimes.docker import LABEL_POOL

log = structlog.get_logger("controller.legacy")
PREFIX = "freqtrade-"
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
        if is_valid_id(p.parent.parent.name) and not p.parent.is_symlink()
    ]
    return found[0] if len(found) == 1 else None


class LegacyContainers:
    def __init__(self, client: Callable[[], docker.DockerClient], base_dir: Path) -> None:
        self._client = client
        self.base_dir = base_dir

    async def _run(self, fn: Callable[[], Any]) -> Any:
        def call() -> Any:
            try:
                return fn()
            except docker.errors.DockerException as exc:
                raise RuntimeFailure(f"docker: {exc}") from None

        return await asyncio.to_thread(call)

    async def discover(self) -> dict[str, LegacyBot]:
        """Bot id → every legacy bot on the host; a container without its directory is
        logged and left out (it cannot be told whose it is)."""

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

        return await self._run(discover)

    async def state(self, name: str) -> str:
        """Docker's state of the container, or "missing"."""

        def state() -> str:
            try:
                return self._client().containers.get(name).status
            except docker.errors.NotFound:
                return "missing"

        return await self._run(state)

    async def spec(self, name: str) -> dict[str, Any]:
        """The container as Docker describes it (kept with the bot's backup)."""
        return await self._run(lambda: self._client().containers.get(name).attrs)

    async def stop(self, name: str) -> None:
        await self._run(lambda: self._client().containers.get(name).stop(timeout=STOP_TIMEOUT))
        log.info("legacy_container_stopped", container=name)

    async def start(self, name: str) -> None:
        await self._run(lambda: self._client().containers.get(name).start())
        log.info("legacy_container_started", container=name)

    async def remove(self, name: str) -> None:
        def remove() -> None:
            with contextlib.suppress(docker.errors.NotFound):
                self._client().containers.get(name).remove(force=True)

        await self._run(remove)
        log.info("legacy_container_removed", container=name)
