"""The `swarm` runtime: each pool is a one-replica Swarm service `freqtrade-pool-<poolId>`,
pinned by a placement constraint to the node placement picked (swarm_nodes.py), on an
attachable overlay network (SWARM_NETWORK, `dnsrr`: this kernel-independent mode needs no
IPVS), its directory bind-mounted from that node's disk as the docker runtime does.

Swarm never restarts or moves a pool by itself (restart condition `none`; updates stop the
old task first): ftpool decides when a pool starts again and where (principle 4). Every SDK
call blocks and runs in a worker thread; task states are polled (Swarm's event stream
reports services and nodes, not a task that died on another node).
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import docker
import docker.errors
import structlog

from controller.errors import PoolExists, RuntimeFailure
from controller.runtimes.base import (
    PoolLaunch,
    PoolRuntime,
    PoolUsage,
    RuntimeState,
    retire_pool_dir,
)
from controller.runtimes.docker import DockerClient, in_thread, restart_agent_in
from controller.runtimes.spec import (
    LABEL_POOL,
    STOP_TIMEOUT,
    DockerOptions,
    pool_spec,
    prepare_dirs,
)
from controller.runtimes.swarm_images import ServiceImages
from controller.runtimes.swarm_nodes import LabelRule, Node, pick_node
from controller.runtimes.swarm_pool_nodes import PoolNodes
from controller.runtimes.swarm_tasks import (
    LABEL_NODE,
    current_task,
    is_live,
    service_spec,
    task_address,
    task_state,
)
from controller.runtimes.swarm_volumes import (
    WipeResult,
    mounted_volume,
    wipe_verdict,
    wipe_volume,
)

log = structlog.get_logger("runtime.swarm")
POLL_INTERVAL = 2.0  # seconds between two looks at the pools' tasks (watch)


class SwarmRuntime(PoolNodes, ServiceImages, DockerClient, PoolRuntime):
    name = "swarm"

    def __init__(
        self,
        options: DockerOptions,
        rules: tuple[LabelRule, ...] = (),
        client: docker.DockerClient | None = None,
    ) -> None:
        self.options = options
        self.rules = rules
        self.pools_dir = options.pools_dir
        self._client = client
        self._addresses: dict[str, str] = {}  # pool -> where the controller reaches its bots
        self._nodes: dict[str, str] = {}  # pool -> node id
        # pool -> the volume its service mounts at /pool (POOL_STORAGE=node), as made or seen
        self._volumes: dict[str, str] = {}
        self._names: dict[str, str] = {}  # a legacy bot's pool -> its service's name
        self._poll_stop = threading.Event()

    def name_pool(self, pool_id: str, name: str) -> None:
        self._names[pool_id] = name

    def service_name(self, pool_id: str) -> str:
        """`freqtrade-pool-<poolId>`; a legacy bot's pool keeps the bot's own container name,
        `freqtrade-<instanceId>`, as with the docker runtime."""
        return self._names.get(pool_id, f"freqtrade-pool-{pool_id}")

    def _service(self, pool_id: str) -> Any:
        # A legacy bot's pool made before legacy pools were named after their bot has the
        # pool's name: looked for too, so it is found, never made a second time.
        names = dict.fromkeys((self.service_name(pool_id), f"freqtrade-pool-{pool_id}"))
        for name in names:
            try:
                service = self.client.services.get(name)
            except docker.errors.NotFound:
                continue
            labels = service.attrs.get("Spec", {}).get("Labels") or {}
            if labels.get(LABEL_POOL) == pool_id:  # a legacy bot's name: maybe not ours
                return service
        return None

    def _tasks(self, service: Any) -> list[dict[str, Any]]:
        return self.client.api.tasks(filters={"service": service.id})

    def _remember(self, pool_id: str, service: Any, tasks: list[dict[str, Any]]) -> None:
        spec = service.attrs.get("Spec", {})
        node_id = (spec.get("Labels") or {}).get(LABEL_NODE)
        if node_id:
            self._nodes[pool_id] = node_id
        if volume := mounted_volume(spec):
            self._volumes[pool_id] = volume
        task = current_task(tasks)
        if task is None:
            return
        if self.options.publish_ports and node_id:
            node = self.client.nodes.get(node_id)
            self._addresses[pool_id] = Node.from_attrs(node.attrs).address
        else:
            address = task_address(task, self.options.network)
            if address:
                self._addresses[pool_id] = address

    def _local_container(self, pool_id: str) -> str | None:
        """The id of the pool's running task's container if it runs on the node of the
        daemon the controller talks to (None: no running task, or on another node)."""
        service = self._service(pool_id)
        task = current_task(self._tasks(service)) if service is not None else None
        if task is None or task.get("Status", {}).get("State") != "running":
            return None
        if task.get("NodeID") != self.client.info().get("Swarm", {}).get("NodeID"):
            return None
        return task.get("Status", {}).get("ContainerStatus", {}).get("ContainerID")

    # -- the interface ------------------------------------------------------------------

    @property
    def bot_listen_ip(self) -> str:
        return "0.0.0.0"  # the controller reaches bots over the overlay (or published ports)

    def bot_host(self, pool_id: str) -> str:
        return self._addresses.get(pool_id, self.service_name(pool_id))

    def display_host(self, pool_id: str) -> str:
        return self.service_name(pool_id)

    async def create(self, launch: PoolLaunch) -> None:
        node_id = await self._run(self._create, launch)
        log.info("pool_service_created", pool=launch.pool_id, node=node_id,
                 image=launch.image or self.options.image)  # fmt: skip

    def _create(self, launch: PoolLaunch) -> str:
        o = self.options
        name = self.service_name(launch.pool_id)
        # Swarm's name filter matches a prefix (pool-1 would find pool-10): compared whole.
        if any(s.name == name for s in self.client.services.list(filters={"name": name})):
            # Not ours to reuse or destroy: it may run bots the store does not know.
            raise PoolExists(f"service {name} already exists; it is left alone")
        nodes = [Node.from_attrs(node.attrs) for node in self.client.nodes.list()]
        counts = {node_id: len(pools) for node_id, pools in self._pools_by_node().items()}
        node = pick_node(nodes, counts, self.pool_memory, self.rules)
        if node is None:
            raise RuntimeFailure("swarm: no node can take another pool (SWARM_NODE_LABELS, memory)")
        self.ensure_network(o.network, driver="overlay", attachable=True, scope="swarm")
        prepare_dirs(launch, o)
        spec = pool_spec(launch, o)
        image, labels = self.pinned_image(spec.image)  # by id (swarm_images.py)
        kwargs = service_spec(replace(spec, image=image), name, node.id, o.network,
                              o.publish_ports)  # fmt: skip
        kwargs["labels"].update(labels)
        self.client.api.create_service(**kwargs)
        self._nodes[launch.pool_id] = node.id
        self._volumes.pop(launch.pool_id, None)
        for volume in spec.volumes:  # its own: never an earlier pool's of that number
            self._volumes[launch.pool_id] = volume
        if o.publish_ports:
            self._addresses[launch.pool_id] = node.address
        self.wait_started(launch.pool_id)  # a rejected task fails the creation at once
        return node.id

    async def inspect(self, pool_id: str) -> RuntimeState:
        def inspect() -> RuntimeState:
            service = self._service(pool_id)
            if service is None:
                return RuntimeState.MISSING
            tasks = self._tasks(service)
            self._remember(pool_id, service, tasks)
            return task_state(service.attrs, tasks, *self._node_ids())

        return await self._run(inspect)

    def _scale_down(self, pool_id: str, service: Any) -> None:
        """No task of the service runs any more (confirmed), or RuntimeFailure (at once for
        a task on a node that is not ready: it cannot be confirmed)."""
        service.scale(0)
        deadline = time.monotonic() + STOP_TIMEOUT + 30
        while live := [t for t in self._tasks(service) if is_live(t)]:
            lost = self._lost_nodes()
            if any(t.get("NodeID") in lost for t in live):
                raise RuntimeFailure(
                    f"swarm: the node of {self.service_name(pool_id)} is unreachable; "
                    "its task is not confirmed dead"
                )
            if time.monotonic() > deadline:
                raise RuntimeFailure(
                    f"swarm: the task of {self.service_name(pool_id)} did not stop "
                    "(its node may be unreachable); it is not confirmed dead"
                )
            time.sleep(0.5)

    async def restart(self, pool_id: str) -> None:
        def restart() -> None:
            service = self._service(pool_id)
            if service is None:
                raise RuntimeFailure(f"service {self.service_name(pool_id)} does not exist")
            # A new task on the same node once the old one is confirmed gone. Not Swarm's
            # own forced update: its stop-first order starts the new task after a minute
            # even while the old one is still stopping its bots (each then ran twice).
            self._scale_down(pool_id, service)
            service.reload()
            service.scale(1)
            service.reload()
            self._remember(pool_id, service, self._tasks(service))

        await self._run(restart)
        log.info("pool_service_restarted", pool=pool_id)

    async def restart_agent(self, pool_id: str) -> None:
        """supervisorctl restart agent in the task's container, when it runs on the node of
        the controller's own daemon; elsewhere it cannot (no exec across a swarm) and the
        health monitor restarts the whole pool instead, two grace periods later."""

        def restart() -> None:
            container_id = self._local_container(pool_id)
            if container_id is None:
                raise RuntimeFailure(
                    f"swarm: {self.service_name(pool_id)} runs no task on this node"
                )
            restart_agent_in(self.client.containers.get(container_id))

        await self._run(restart)
        log.info("pool_agent_restarted", pool=pool_id)

    async def abandon(self, pool_id: str) -> None:
        """Remove the service of a pool on an unreachable node without confirming its task
        ended (its agent has fenced its bots by now): Swarm then never starts it again, and
        its node, once back, removes the task (measured: issue 15's e2e test)."""

        def abandon() -> None:
            service = self._service(pool_id)
            if service is not None:
                service.remove()
            self._forget(pool_id)

        await self._run(abandon)
        log.warning("pool_service_abandoned", pool=pool_id)

    async def stop(self, pool_id: str) -> None:
        def stop() -> None:
            service = self._service(pool_id)
            if service is not None:
                self._scale_down(pool_id, service)

        await self._run(stop)
        log.info("pool_service_stopped", pool=pool_id)

    async def discard(self, pool_id: str) -> None:
        def discard() -> None:
            service = self._service(pool_id)
            if service is not None:
                self._scale_down(pool_id, service)
                service.remove()
            self._forget(pool_id)

        await self._run(discard)
        log.info("pool_service_discarded", pool=pool_id)

    def _forget(self, pool_id: str) -> None:
        for known in (self._addresses, self._nodes, self._volumes):
            known.pop(pool_id, None)

    async def remove(self, pool_id: str, *, bots: int = 0, abandoned: bool = False) -> None:
        if not self.options.node_storage:
            await self.discard(pool_id)
            await self._run(retire_pool_dir, self.pools_dir / pool_id, self.options.archive_dir)
            log.info("pool_service_removed", pool=pool_id)
            return
        # Which node, image and volume it ran, asked before its service goes.
        node_id, image, volume = await self._run(self._mounted, pool_id)
        await self.discard(pool_id)
        # Its task is confirmed gone: its volume, on its node, emptied unless still needed.
        node = await self._run(self._node, node_id) if node_id else None
        verdict = wipe_verdict(bots=bots, abandoned=abandoned, node=node, volume=volume)
        if not verdict.wipe or node is None or volume is None:
            log.info("pool_service_removed", pool=pool_id, volume=volume,
                     volume_kept=verdict.reason)  # fmt: skip
            return
        try:
            result = await self._run(wipe_volume, self.client, pool_id, volume, node.id, image)
        except RuntimeFailure as exc:  # the pool is gone all the same: only its data stays
            result = WipeResult(False, str(exc))
        if result.wiped:
            log.info("pool_service_removed", pool=pool_id, volume=volume, volume_emptied=True)
        else:
            log.warning("pool_volume_kept", pool=pool_id, volume=volume, node=node.id,
                        reason=result.detail)  # fmt: skip

    def _mounted(self, pool_id: str) -> tuple[str | None, str, str | None]:
        """The node the pool's service is pinned to, its image (there on that node) and the
        volume it mounts: from its service (a pool an earlier controller made has its old
        volume name), else as this runtime last made or saw it (None: not known)."""
        service = self._service(pool_id)
        spec = service.attrs.get("Spec", {}) if service is not None else {}
        node_id = (spec.get("Labels") or {}).get(LABEL_NODE) or self._nodes.get(pool_id)
        image = spec.get("TaskTemplate", {}).get("ContainerSpec", {}).get("Image")
        volume = mounted_volume(spec) or self._volumes.get(pool_id)
        return node_id, image or self.options.image, volume

    async def stats(self, pool_id: str) -> PoolUsage | None:
        """The task's container's memory when it runs on the controller's own daemon's
        node; None elsewhere (a manager cannot read another node's container stats: the
        agent's heartbeat reports the pool's memory)."""

        def stats() -> PoolUsage | None:
            container_id = self._local_container(pool_id)
            return self.container_usage(container_id) if container_id else None

        return await self._run(stats)

    async def list(self) -> list[str]:
        def list_pools() -> list[str]:
            found = []
            for service in self.client.services.list(filters={"label": LABEL_POOL}):
                pool_id = (service.attrs.get("Spec", {}).get("Labels") or {})[LABEL_POOL]
                self._remember(pool_id, service, self._tasks(service))
                found.append(pool_id)
            return sorted(found)

        return await self._run(list_pools)

    def _live_pools(self) -> set[str]:
        services = {s.id: s.attrs for s in self.client.services.list(filters={"label": LABEL_POOL})}
        lost, known = self._node_ids()
        by_service: dict[str, list[dict[str, Any]]] = {}
        for task in self.client.api.tasks():
            if task.get("ServiceID") in services:
                by_service.setdefault(task["ServiceID"], []).append(task)
        return {
            attrs["Spec"]["Labels"][LABEL_POOL]
            for service_id, attrs in services.items()
            if task_state(attrs, by_service.get(service_id, []), lost, known)
            is RuntimeState.RUNNING
        }

    def watch(self, on_event: Callable[[str, str], None]) -> None:
        """Report a pool whose task stopped running (or whose service went), by polling."""
        loop = asyncio.get_running_loop()

        def poll() -> None:
            live: set[str] | None = None
            while not self._poll_stop.wait(POLL_INTERVAL):
                try:
                    now = self._live_pools()
                except Exception as exc:
                    log.warning("swarm_poll_failed", error=str(exc))
                    continue
                for pool_id in sorted((live or set()) - now):
                    loop.call_soon_threadsafe(on_event, pool_id, "die")
                live = now

        threading.Thread(target=poll, name="swarm-tasks", daemon=True).start()

    async def close(self) -> None:
        self._poll_stop.set()
        if self._client is not None:
            await in_thread(self._client.close)
