"""The `docker` runtime: each pool is a container `freqtrade-pool-<poolId>` of POOL_IMAGE
(a legacy bot's pool: `freqtrade-<instanceId>`).

Every Docker SDK call blocks, so each runs in a worker thread; Docker's event
stream is read by one dedicated thread and handed to the event loop. The
controller only creates, inspects, restarts, removes and measures containers
(principle 2): it never execs into one. The pool's data directory on the host is
bind-mounted at /pool, which is where its agent keeps bots, programs and archives.
"""

from __future__ import annotations

import asyncio
import dataclasses
import socket
import threading
from collections.abc import Callable, Collection
from typing import Any, TypeVar

import docker
import docker.errors
import requests
import structlog
import urllib3
from docker.models.containers import Container

from controller.errors import PoolExists, RuntimeFailure
from controller.runtimes.base import (
    ImageInfo,
    PoolLaunch,
    PoolRuntime,
    PoolUsage,
    RuntimeState,
    retire_pool_dir,
)
from controller.runtimes.cgroups import PoolGroups, decide_mode
from controller.runtimes.spec import (
    CAP_ADD,
    LABEL_POOL,
    LOG_OPTIONS,
    STOP_TIMEOUT,
    WRITABLE_CGROUPS,
    pool_spec,
    prepare_dirs,
)
from controller.runtimes.spec import DockerOptions as DockerOptions  # re-exported

log = structlog.get_logger("runtime.docker")
# supervisorctl of the pool image's own supervisor install (see images/pool/Dockerfile).
SUPERVISORCTL = ["/opt/ftpool/bin/python", "-m", "supervisor.supervisorctl",
                 "-c", "/etc/supervisor/supervisord.conf"]  # fmt: skip
T = TypeVar("T")


# What a Docker SDK call raises when the daemon fails: the SDK's own errors, and those it
# lets through from below (requests' ConnectionError for a daemon that is away, urllib3's
# on a broken stream, the socket's and the file system's OSError).
DAEMON_ERRORS = (
    docker.errors.DockerException,
    requests.exceptions.RequestException,
    urllib3.exceptions.HTTPError,
    OSError,
)


async def in_thread(fn: Callable[..., T], *args: Any) -> T:
    """Run a blocking Docker SDK call in a worker thread; its errors become RuntimeFailure."""

    def call() -> T:
        try:
            return fn(*args)
        except DAEMON_ERRORS as exc:
            raise RuntimeFailure(f"docker: {exc}") from None

    return await asyncio.to_thread(call)


def restart_agent_in(container: Container) -> None:
    """supervisorctl restart agent, inside the pool's running container."""
    code, output = container.exec_run([*SUPERVISORCTL, "restart", "agent"])
    if code != 0:
        raise RuntimeFailure(f"supervisorctl restart agent: {output.decode()[-300:]}")


class DockerClient:
    """A runtime's Docker SDK client, made on first use, and its calls off the loop."""

    _client: docker.DockerClient | None = None
    options: DockerOptions

    async def resolve_image(self, ref: str = "") -> ImageInfo | None:
        """The image `ref` (default: POOL_IMAGE) names on the daemon now; None: it has none."""
        ref = ref or self.options.image

        def resolve() -> ImageInfo | None:
            try:
                return ImageInfo(ref, self.client.images.get(ref).id)
            except docker.errors.ImageNotFound:
                return None

        return await self._run(resolve)

    @property
    def client(self) -> docker.DockerClient:
        if self._client is None:
            self._client = docker.from_env(timeout=120)
        return self._client

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        return await in_thread(fn, *args)

    def ensure_network(self, name: str, **create: Any) -> None:
        """The network `name`, made with `create` if it does not exist."""
        try:
            self.client.networks.get(name)
        except docker.errors.NotFound:
            self.client.networks.create(name, **create)

    def container_usage(self, container_id: str) -> PoolUsage:
        """A container's memory; one-shot, so no second sample and no CPU figure (the
        agent reports the pool's CPU)."""
        raw = self.client.api.stats(container_id, stream=False, one_shot=True)
        memory = raw.get("memory_stats", {})
        detail = memory.get("stats", {})
        # Docker's own `docker stats` figure: usage minus reclaimable page cache.
        cache = detail.get("inactive_file", detail.get("total_inactive_file", 0))
        return PoolUsage(
            memory_bytes=max(0, memory.get("usage", 0) - cache),
            memory_limit=memory.get("limit", 0),
            cpu_percent=None,
        )


class DockerRuntime(DockerClient, PoolRuntime):
    name = "docker"

    def __init__(self, options: DockerOptions, client: docker.DockerClient | None = None) -> None:
        self.options = options
        self.pools_dir = options.pools_dir
        self._client = client
        self._addresses: dict[str, str] = {}
        self._names: dict[str, str] = {}
        self._events_stop = threading.Event()
        self._events_stream: Any = None
        self._daemon_host: str | None = None
        self._groups = PoolGroups(options.cgroup_view)  # their parents (POOL_CGROUPS=v1)

    # -- plumbing -------------------------------------------------------------------

    def name_pool(self, pool_id: str, name: str) -> None:
        self._names[pool_id] = name

    async def node_of(self, pool_id: str) -> str:
        """The Docker daemon's machine (DOCKER_HOST may name another than this one), asked
        once; this machine's name while the daemon does not answer."""
        if self._daemon_host is None:
            try:
                info = await self._run(self.client.info)
            except RuntimeFailure:
                return socket.gethostname()
            self._daemon_host = str(info.get("Name") or "") or socket.gethostname()
        return self._daemon_host

    def container_name(self, pool_id: str) -> str:
        return self._names.get(pool_id, f"freqtrade-pool-{pool_id}")

    def _get(self, pool_id: str) -> Container | None:
        try:
            container = self.client.containers.get(self.container_name(pool_id))
        except docker.errors.NotFound:
            return None
        # A legacy bot's name is shared with containers ftpool never made: only its own.
        return container if container.labels.get(LABEL_POOL) == pool_id else None

    def _remember_address(self, container: Container) -> None:
        if self.options.host_network:
            return
        networks = container.attrs.get("NetworkSettings", {}).get("Networks", {})
        address = networks.get(self.options.network, {}).get("IPAddress")
        pool_id = container.labels.get(LABEL_POOL)
        if address and pool_id:
            self._addresses[pool_id] = address

    # -- the pools' cgroup parents (POOL_CGROUPS=v1) -----------------------------------

    async def prepare(self) -> None:
        """POOL_CGROUPS decided on this daemon (controller/runtimes/cgroups.py)."""
        if self.options.cgroups != "off":
            info = await self._run(self.client.info)
            mode = await asyncio.to_thread(decide_mode, self.options.cgroups, info,
                                           self.options.cgroup_view)  # fmt: skip
            self.options = dataclasses.replace(self.options, cgroups=mode)

    async def sweep(self, keep: Collection[str] | None = None) -> None:
        if self.options.cgroups == "v1":
            await asyncio.to_thread(self._groups.sweep, keep)

    def _remove_groups(self, pool_id: str) -> None:
        if self.options.cgroups == "v1":
            self._groups.remove(pool_id)

    # -- the interface ----------------------------------------------------------------

    @property
    def bot_listen_ip(self) -> str:
        # On the host network bots stay on loopback; on a bridge the controller must reach them.
        return "127.0.0.1" if self.options.host_network else "0.0.0.0"

    def bot_host(self, pool_id: str) -> str:
        if self.options.host_network:
            return "127.0.0.1"
        return self._addresses.get(pool_id, self.container_name(pool_id))

    def display_host(self, pool_id: str) -> str:
        return "127.0.0.1" if self.options.host_network else self.container_name(pool_id)

    async def create(self, launch: PoolLaunch) -> None:
        await self._run(self._create, launch)
        log.info("pool_container_created", pool=launch.pool_id,
                 image=launch.image or self.options.image)  # fmt: skip

    def _create(self, launch: PoolLaunch) -> None:
        o = self.options
        name = self.container_name(launch.pool_id)
        if self.client.containers.list(all=True, filters={"name": f"^{name}$"}):
            # Not ours to reuse or destroy: it may run bots the store does not know.
            raise PoolExists(f"container {name} already exists; it is left alone")
        prepare_dirs(launch, o)
        spec = pool_spec(launch, o)
        kwargs: dict[str, Any] = {
            "name": self.container_name(launch.pool_id),
            "detach": True,
            "labels": spec.labels,
            "environment": spec.env,
            "volumes": {host: {"bind": path, "mode": "rw"} for host, path in spec.binds.items()},
            "restart_policy": {"Name": "unless-stopped"},
            "stop_signal": "SIGTERM",
            "log_config": {"type": "json-file", "config": LOG_OPTIONS},
            "cap_add": list(CAP_ADD),
        }
        if spec.memory_limit:
            kwargs["mem_limit"] = spec.memory_limit
        if spec.cgroup_parent:
            kwargs["cgroup_parent"] = spec.cgroup_parent
        if spec.writable_cgroups:
            kwargs["cgroupns"] = "private"
            kwargs["security_opt"] = [WRITABLE_CGROUPS]
        if o.oom_score_adj:
            # supervisord and all it starts; the agent raises each bot's (agent/oom.py).
            kwargs["oom_score_adj"] = o.oom_score_adj
        if o.host_network:
            kwargs["network_mode"] = "host"
        else:
            self.ensure_network(o.network, driver="bridge")
            kwargs["network"] = o.network
            if o.publish_ports:
                kwargs["ports"] = {f"{p}/tcp": (o.publish_ip, p) for p in spec.ports}
        container = self.client.containers.run(spec.image, **kwargs)
        container.reload()
        self._remember_address(container)

    async def inspect(self, pool_id: str) -> RuntimeState:
        def inspect() -> RuntimeState:
            container = self._get(pool_id)
            if container is None:
                return RuntimeState.MISSING
            self._remember_address(container)
            # "restarting" counts as running: Docker's restart policy is already at work.
            if container.status in ("running", "restarting"):
                return RuntimeState.RUNNING
            return RuntimeState.EXITED

        return await self._run(inspect)

    has_images = True

    async def image_of(self, pool_id: str) -> ImageInfo | None:
        def image_of() -> ImageInfo | None:
            container = self._get(pool_id)
            if container is None:
                return None
            return ImageInfo(container.attrs["Config"]["Image"], container.attrs["Image"])

        return await self._run(image_of)

    async def restart(self, pool_id: str) -> None:
        def restart() -> None:
            container = self._get(pool_id)
            if container is None:
                raise RuntimeFailure(f"container {self.container_name(pool_id)} does not exist")
            if container.status == "running":
                container.restart(timeout=STOP_TIMEOUT)
            else:
                container.start()
            container.reload()
            self._remember_address(container)

        await self._run(restart)
        log.info("pool_container_restarted", pool=pool_id)

    async def restart_agent(self, pool_id: str) -> None:
        def restart() -> None:
            container = self._get(pool_id)
            if container is None or container.status != "running":
                raise RuntimeFailure(f"container {self.container_name(pool_id)} is not running")
            restart_agent_in(container)

        await self._run(restart)
        log.info("pool_agent_restarted", pool=pool_id)

    async def discard(self, pool_id: str) -> None:
        def discard() -> None:
            container = self._get(pool_id)
            if container is not None:
                # Removed, not stopped: Docker's restart policy must not bring it back.
                container.remove(force=True)
            self._addresses.pop(pool_id, None)
            self._remove_groups(pool_id)

        await self._run(discard)
        log.info("pool_container_discarded", pool=pool_id)

    async def stop(self, pool_id: str) -> None:
        def stop() -> None:
            container = self._get(pool_id)
            if container is not None and container.status in ("running", "restarting"):
                # SIGTERM to supervisord, which stops each bot (up to 30 s) before it exits;
                # a stopped container stays stopped under "unless-stopped".
                container.stop(timeout=STOP_TIMEOUT)

        await self._run(stop)
        log.info("pool_container_stopped", pool=pool_id)

    async def remove(self, pool_id: str, *, bots: int = 0, abandoned: bool = False) -> None:
        def remove() -> None:
            container = self._get(pool_id)
            if container is not None:
                if container.status == "running":
                    container.stop(timeout=STOP_TIMEOUT)
                container.remove()
            self._addresses.pop(pool_id, None)
            self._remove_groups(pool_id)
            retire_pool_dir(self.pools_dir / pool_id, self.options.archive_dir)

        await self._run(remove)
        log.info("pool_container_removed", pool=pool_id)

    async def stats(self, pool_id: str) -> PoolUsage | None:
        def stats() -> PoolUsage | None:
            container = self._get(pool_id)
            if container is None or container.status != "running":
                return None
            return self.container_usage(container.id)

        return await self._run(stats)

    async def list(self) -> list[str]:
        def list_pools() -> list[str]:
            containers = self.client.containers.list(all=True, filters={"label": LABEL_POOL})
            for c in containers:
                self._remember_address(c)
            return sorted(c.labels[LABEL_POOL] for c in containers)

        return await self._run(list_pools)

    def watch(self, on_event: Callable[[str, str], None]) -> None:
        """Report die/oom/kill/destroy of pool containers, read from Docker's event stream.

        destroy too: `docker rm -f` reports die while the container still exists, and the
        recovery that follows at once finds it exited, not missing."""
        loop = asyncio.get_running_loop()

        def read() -> None:
            while not self._events_stop.is_set():
                try:
                    self._events_stream = self.client.events(
                        decode=True,
                        filters={"type": "container", "label": LABEL_POOL,
                                 "event": ["die", "oom", "kill", "destroy"]},
                    )  # fmt: skip
                    for event in self._events_stream:
                        pool_id = event.get("Actor", {}).get("Attributes", {}).get(LABEL_POOL)
                        if pool_id:
                            loop.call_soon_threadsafe(on_event, pool_id, event.get("Action", ""))
                except Exception as exc:
                    if self._events_stop.is_set():
                        return
                    log.warning("docker_events_interrupted", error=str(exc))
                    self._events_stop.wait(2)

        threading.Thread(target=read, name="docker-events", daemon=True).start()

    async def close(self) -> None:
        self._events_stop.set()
        if self._events_stream is not None:
            await asyncio.to_thread(self._events_stream.close)
        if self._client is not None:
            await asyncio.to_thread(self._client.close)
