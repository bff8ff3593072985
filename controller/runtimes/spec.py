"""What a pool's container is, whichever Docker engine runs it: its options, and the
environment, mounts, labels and limits that `docker` (a container) and `swarm` (a service's
task) both give it. Pure, apart from `prepare_dirs`, which makes the directories it mounts."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from common import __version__
from common.settings import ControllerSettings
from controller.runtimes.base import PoolLaunch, make_backup_dir

LABEL_POOL = "ftpool.pool"
LABEL_VERSION = "ftpool.version"
VOLUME_PREFIX = "ftpool-pool-"  # a pool's volume on its node (pool_volume)
POOL_MOUNT = "/pool"
BACKUP_MOUNT = "/backup"
STOP_TIMEOUT = 90  # supervisord gives each bot up to 30 s to shut down cleanly
# The agent (root) reads each bot's own memory from /proc/<pid>/smaps_rollup and renices a
# busy bot's threads (agent/cpu.py): for a process of another user (each bot's) the kernel
# asks for CAP_SYS_PTRACE and CAP_SYS_NICE.
CAP_ADD = ("SYS_PTRACE", "SYS_NICE")
# Per-bot cgroups (agent/cgroups.py). v1: the pool runs under --cgroup-parent
# /ftpool/<pool>, whose directory in each hierarchy below is bound read-write at
# /cgroup/<hierarchy> (Docker's legacy binds make a missing host directory, i.e. the
# cgroup); never a hierarchy's root (its release_agent), and no CAP_SYS_ADMIN.
# v2: a private cgroup namespace whose /sys/fs/cgroup Docker (>= 28) mounts writable.
CGROUP_PARENT = "/ftpool"
CGROUP_V1_HIERARCHIES = ("memory", "cpu", "cpuacct")
CGROUP_V1_MOUNT = "/cgroup"
WRITABLE_CGROUPS = "writable-cgroups=true"
LOG_OPTIONS = {"max-size": "10m", "max-file": "3"}


@dataclass(frozen=True, slots=True)
class DockerOptions:
    image: str
    network: str  # "host", a user-defined bridge network, or (swarm) an overlay network
    pools_dir: Path  # where the controller sees pool directories
    host_pools_dir: Path  # the same directory as the Docker host sees it (bind source)
    archive_dir: Path
    # The backup target as the Docker host sees it (pool P's: <it>/pools/P, at /backup).
    host_backups_dir: Path | None = None
    memory_limit: str = ""
    oom_score_adj: int = 0  # of the container's processes (0: Docker's default, not set)
    publish_ports: bool = False
    publish_ip: str = "127.0.0.1"
    # POOL_STORAGE=node (swarm): each pool's /pool is a volume on its node's own disk
    # (pool_volume: one per pool incarnation), which the controller never sees; shared: a
    # bind of host_pools_dir/<id>.
    node_storage: bool = False
    # POOL_CGROUPS: off, v1 or v2 (swarm: always off); auto until DockerRuntime.prepare
    # decides it on the daemon (controller/runtimes/cgroups.py).
    cgroups: str = "off"
    cgroup_root: Path = Path("/sys/fs/cgroup")  # the Docker host's v1 hierarchies
    cgroup_view: Path = Path("/sys/fs/cgroup")  # the same as this controller sees them

    @classmethod
    def from_settings(cls, settings: ControllerSettings) -> DockerOptions:
        swarm = settings.pool_runtime == "swarm"
        return cls(
            image=settings.pool_image,
            network=settings.swarm_network if swarm else settings.pool_network,
            pools_dir=settings.pools_dir,
            host_pools_dir=settings.host_pools_dir,
            archive_dir=settings.bot_base_dir / "archive",
            host_backups_dir=settings.host_backups_dir,
            memory_limit=settings.pool_memory_limit,
            oom_score_adj=settings.pool_oom_score_adj,
            publish_ports=settings.pool_publish_ports,
            publish_ip=settings.pool_publish_ip,
            node_storage=swarm and settings.node_storage,
            # A swarm service has no cgroup parent nor writable cgroups: measured there.
            cgroups="off" if swarm else settings.pool_cgroups,
            cgroup_root=settings.pool_cgroup_root,
            cgroup_view=Path(settings.pool_cgroup_view or settings.pool_cgroup_root),
        )

    @property
    def host_network(self) -> bool:
        return self.network == "host"


@dataclass(frozen=True, slots=True)
class PoolSpec:
    """A pool's container as both engines make it."""

    image: str
    env: dict[str, str] = field(repr=False)  # holds the pool's token
    binds: dict[str, str]  # path on the Docker host -> path in the container (read-write)
    labels: dict[str, str]
    memory_limit: str  # "" for none
    volumes: dict[str, str] = field(default_factory=dict)  # a node's volume -> path in it
    cgroup_parent: str = ""  # v1: --cgroup-parent ("" none)
    writable_cgroups: bool = False  # v2: a private cgroup namespace, writable

    @property
    def ports(self) -> range:
        start = int(self.env["POOL_PORT_START"])
        return range(start, start + int(self.env["POOL_CAPACITY"]))


def pool_spec(launch: PoolLaunch, options: DockerOptions) -> PoolSpec:
    env = {
        "CONTROLLER_URL": launch.controller_url,
        "POOL_ID": launch.pool_id,
        "POOL_TOKEN": launch.token,
        "POOL_CAPACITY": str(launch.capacity),
        "POOL_PORT_START": str(launch.port_start),
        **launch.agent_env,
    }
    binds, volumes = {}, {}
    if options.node_storage:
        # Made by its node's Docker; never an earlier pool's of the same number.
        volumes[pool_volume(launch.pool_id, launch.created_at)] = POOL_MOUNT
    else:
        binds[str(options.host_pools_dir / launch.pool_id)] = POOL_MOUNT
    if launch.backup_dir is not None and options.host_backups_dir is not None:
        # Its own bots' backups only: the pool's directory of the target, nothing else.
        binds[str(options.host_backups_dir / "pools" / launch.pool_id)] = BACKUP_MOUNT
        env["BACKUP_DIR"] = BACKUP_MOUNT
    parent = ""
    if options.cgroups == "v1":
        parent = f"{CGROUP_PARENT}/{launch.pool_id}"
        for hierarchy in CGROUP_V1_HIERARCHIES:
            host = options.cgroup_root / hierarchy / parent.lstrip("/")
            binds[str(host)] = f"{CGROUP_V1_MOUNT}/{hierarchy}"
        env |= {"POOL_CGROUP": "v1", "POOL_CGROUP_PARENT": parent}
    elif options.cgroups == "v2":
        env["POOL_CGROUP"] = "v2"
    return PoolSpec(
        image=launch.image or options.image,
        env=env,
        binds=binds,
        labels={LABEL_POOL: launch.pool_id, LABEL_VERSION: __version__},
        memory_limit=options.memory_limit,
        volumes=volumes,
        cgroup_parent=parent,
        writable_cgroups=options.cgroups == "v2",
    )


def pool_volume(pool_id: str, created_at: float) -> str:
    """The Docker volume of a pool's directory on its node (POOL_STORAGE=node):
    `ftpool-pool-<poolId>-<incarnation>`. Pool numbers are reused, and a removed pool's
    volume may be kept on its node (abandoned by a failover, its node not ready, a bot
    directory left in it): a later pool of the same number never mounts it. A pool an
    earlier controller made has `ftpool-pool-<poolId>`, which its service keeps: the runtime
    takes a pool's volume from its service (swarm_volumes.mounted_volume), never guesses it."""
    return f"{VOLUME_PREFIX}{pool_id}-{incarnation(created_at)}"


def incarnation(created_at: float) -> str:
    """A pool record's creation time (seconds) as a short name part: its milliseconds in
    base 36, lower case (8 characters until the year 2059)."""
    n = max(0, round(created_at * 1000))
    digits = ""
    while True:
        n, d = divmod(n, 36)
        digits = _BASE36[d] + digits
        if n == 0:
            return digits


_BASE36 = "0123456789abcdefghijklmnopqrstuvwxyz"


def prepare_dirs(launch: PoolLaunch, options: DockerOptions) -> None:
    """The pool's directory (and its backup target) before the container mounts them; a
    node's volume (POOL_STORAGE=node) is made by that node's Docker as the task starts."""
    if not options.node_storage:
        pool_dir = options.pools_dir / launch.pool_id
        pool_dir.mkdir(parents=True, exist_ok=True)
        # Bot users inside the container must traverse /pool to reach their own directory.
        os.chmod(pool_dir, 0o711)
    if launch.backup_dir is not None and options.host_backups_dir is not None:
        make_backup_dir(launch)
