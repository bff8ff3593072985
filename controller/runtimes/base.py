"""The one interface every pool runtime implements."""

from __future__ import annotations

import abc
import enum
import os
import shutil
import socket
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from pathlib import Path

from common.ownership import own_tree


class RuntimeState(enum.StrEnum):
    RUNNING = "running"
    EXITED = "exited"  # confirmed: nothing of it runs
    MISSING = "missing"
    # On a node the runtime cannot reach (down, cut off): whether its task still runs cannot
    # be told. Only a multi-host runtime says it (swarm); such a pool is replaced only once
    # its agent's fence has surely stopped its bots (controller/health/judge.py).
    UNREACHABLE = "unreachable"


@dataclass(frozen=True, slots=True)
class PoolLaunch:
    """Everything a runtime needs to start a pool's supervisord and agent."""

    pool_id: str
    capacity: int
    port_start: int
    token: str = field(repr=False)
    controller_url: str
    agent_env: dict[str, str] = field(default_factory=dict)
    image: str = ""  # the image to run (a runtime with images); "" for its configured one
    # This pool's backup target, as the controller sees it (None: no backups).
    backup_dir: Path | None = None
    # When its record was made (the store's clock): the same for every start of this pool,
    # another for a later pool of the same number. Names what is this pool's alone on a
    # node (its volume, POOL_STORAGE=node: runtimes/spec.py pool_volume).
    created_at: float = 0.0


@dataclass(frozen=True, slots=True)
class ImageInfo:
    """An image as a pool runs it: the reference it was created from and the image's id
    (a tag may move on to another build; the id does not)."""

    ref: str
    id: str

    def to_json(self) -> dict[str, str]:
        return {"ref": self.ref, "id": self.id}


def make_backup_dir(launch: PoolLaunch) -> None:
    """The pool's backup target (and the backup root), private to root."""
    if launch.backup_dir is not None:
        launch.backup_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        for directory in (launch.backup_dir, launch.backup_dir.parent.parent):
            os.chmod(directory, 0o700)


@dataclass(frozen=True, slots=True)
class PoolUsage:
    memory_bytes: int
    memory_limit: int
    cpu_percent: float | None  # None where the runtime cannot tell without sampling twice


class PoolRuntime(abc.ABC):
    name: str
    # Where the controller sees the pools' directories (pools/<id>/bots/<bot>/ ...).
    pools_dir: Path

    @abc.abstractmethod
    async def create(self, launch: PoolLaunch) -> None:
        """Create and start the pool; idempotent for a pool that already runs."""

    def name_pool(self, pool_id: str, name: str) -> None:  # noqa: B027 - only Docker names
        """The pool's container is called `name` (a legacy bot's keeps its own name)."""

    async def prepare(self) -> None:  # noqa: B027 - only Docker has something to decide
        """At the controller's start, before any pool is made: decide what depends on the
        engine (Docker: the pools' cgroup mode, POOL_CGROUPS); raise if it cannot run."""

    async def sweep(self, keep: Collection[str] | None = None) -> None:  # noqa: B027
        """Remove what removed pools left on the host outside their containers (Docker: their
        cgroup parents): of every pool not in `keep`, or with None only what a removal
        found busy before. Nothing by default."""

    @abc.abstractmethod
    async def inspect(self, pool_id: str) -> RuntimeState: ...

    @abc.abstractmethod
    async def restart(self, pool_id: str) -> None:
        """Start an exited pool again (or restart a running one) with its existing token."""

    @abc.abstractmethod
    async def restart_agent(self, pool_id: str) -> None:
        """Restart only the pool's agent (its supervisord program); the bots keep running."""

    @abc.abstractmethod
    async def discard(self, pool_id: str) -> None:
        """Make sure nothing of the pool runs, or can start again by itself; keep its files."""

    async def abandon(self, pool_id: str) -> None:
        """Give up a pool on an unreachable node, its agent having fenced its bots: nothing
        of it may start again, here or there, though its end cannot be confirmed (its node,
        once back, removes what is left). By default (one host): discard it."""
        await self.discard(pool_id)

    async def stop(self, pool_id: str) -> None:
        """Stop the pool's bots gracefully (each as its supervisord program stops), and the
        pool with them; keep its runtime and files. By default: discard it."""
        await self.discard(pool_id)

    @abc.abstractmethod
    async def remove(self, pool_id: str, *, bots: int = 0, abandoned: bool = False) -> None:
        """Stop the pool and delete it; bot archives are kept under BOT_BASE_DIR/archive
        (a swarm pool's volume on its node is emptied instead, unless `bots` are still in
        the store's pool or a failover `abandoned` it: controller/runtimes/swarm_volumes.py)."""

    @abc.abstractmethod
    async def stats(self, pool_id: str) -> PoolUsage | None: ...

    @abc.abstractmethod
    async def list(self) -> list[str]:
        """Ids of the pools this runtime finds, known to the controller or not."""

    # Whether pools run images that can change (rolling upgrades, controller/upgrade/).
    has_images = False

    async def image_of(self, pool_id: str) -> ImageInfo | None:
        """The image the pool's runtime runs now (None: it has none, or none runs)."""
        return None

    async def resolve_image(self, ref: str = "") -> ImageInfo | None:
        """The image `ref` (default: the configured one) names now; None if it has none."""
        return None

    async def restart_on(self, pool_id: str, image: str) -> bool:
        """Start the pool, stopped (`stop`), again in place on `image`: its directories, its
        machine and its agent's token stay. False: this runtime cannot, and the caller
        recreates the pool instead (discard, then create)."""
        return False

    async def node_of(self, pool_id: str) -> str | None:
        """The machine the pool runs on, by name (/api/pool/status): by default this one;
        on a multi-host runtime its node (None: not known yet)."""
        return socket.gethostname()

    @abc.abstractmethod
    def bot_host(self, pool_id: str) -> str:
        """The host the controller uses to reach the bots of a pool."""

    def display_host(self, pool_id: str) -> str:
        """The bot host shown to users (/api/pool/bot); by default where the controller goes."""
        return self.bot_host(pool_id)

    @property
    @abc.abstractmethod
    def bot_listen_ip(self) -> str:
        """The address bots bind inside their pool."""

    @abc.abstractmethod
    def watch(self, on_event: Callable[[str, str], None]) -> None:
        """Call on_event(pool_id, action) from the event loop when a pool dies."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Release clients; pools keep running."""


def hand_over(source: Path, target: Path) -> None:
    """Move a bot's directory to `target` (a move's step, controller/moves/transfer.py),
    owned by root on the way.

    Root ownership first, while no agent uses the directory: in the new pool the old slot's
    user may be another tenant's bot. The new pool's agent gives it to the bot's slot user.
    """
    target.parent.mkdir(parents=True, exist_ok=True, mode=0o711)
    if os.geteuid() == 0:
        fd = os.open(source, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
        try:
            os.fchown(fd, 0, 0)
            own_tree(fd, 0, 0)
        finally:
            os.close(fd)
    if target.exists():
        raise FileExistsError(f"{target} exists already; not overwriting it")
    os.rename(source, target)


def retire_pool_dir(pool_dir: Path, archive_dir: Path) -> None:
    """Delete a removed pool's directory, keeping every bot's data in archive_dir.

    Its archive/ (deleted bots) moves over; a bot directory still in bots/ (a bot whose
    move to another pool did not finish, say) is kept too, as <id>-leftover-<time>.
    """
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    kept = [(item, item.name) for item in _entries(pool_dir / "archive")]
    kept += [(item, f"{item.name}-leftover-{stamp}") for item in _entries(pool_dir / "bots")]
    if kept:
        archive_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    for item, name in kept:
        os.rename(item, archive_dir / name)
    shutil.rmtree(pool_dir, ignore_errors=True)


def _entries(directory: Path) -> list[Path]:
    return list(directory.iterdir()) if directory.is_dir() else []
