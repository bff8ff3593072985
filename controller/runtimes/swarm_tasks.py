"""Swarm services and tasks as ftpool makes and reads them. Pure.

A pool's service (`service_spec`: one pinned replica Swarm never restarts), its current
task, how a start stands, and the pool's state from its tasks and the swarm's nodes.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from typing import Any

from docker.types import (
    ContainerSpec,
    DriverConfig,
    EndpointSpec,
    Healthcheck,
    Mount,
    NetworkAttachmentConfig,
    Placement,
    Resources,
    RestartPolicy,
    ServiceMode,
    TaskTemplate,
    UpdateConfig,
)
from docker.utils import parse_bytes

from controller.runtimes.base import RuntimeState
from controller.runtimes.spec import CAP_ADD, LOG_OPTIONS, STOP_TIMEOUT, PoolSpec
from controller.runtimes.swarm_nodes import Node

LABEL_NODE = "ftpool.node"
# A task in one of these is running or on its way to it (Swarm's task states).
LIVE_STATES = frozenset(
    {"new", "pending", "assigned", "accepted", "preparing", "ready", "starting", "running"}
)


def current_task(tasks: Iterable[Mapping[str, Any]]) -> Mapping[str, Any] | None:
    """The service's current task: the one Swarm wants running (one replica: one at the
    most), else the last changed; the others are history Swarm keeps for a while. (Not the
    newest index alone: a replaced task's index moves on as Swarm shuts it down.)"""
    return max(
        tasks,
        key=lambda t: (t.get("DesiredState") == "running", t.get("Version", {}).get("Index", 0)),
        default=None,
    )


def task_start(
    tasks: Iterable[Mapping[str, Any]], before: Collection[str] = frozenset()
) -> str | None:
    """How a service's start stands, from its tasks (`before`: the ids of those it had
    before the start, which do not count): "running", None while its new task is on its
    way (or not made yet), else why it did not start (rejected or failed: Swarm's error).
    Whatever Swarm now wants of an ended task: with restart condition `none` it sets a
    rejected task's desired state to shutdown at once (measured on two nodes)."""
    new = [t for t in tasks if t.get("ID") not in before]
    task = max(new, key=lambda t: t.get("Version", {}).get("Index", 0), default=None)
    if task is None:
        return None  # the orchestrator has not made the new task yet
    status = task.get("Status", {})
    state = status.get("State")
    if state == "running":
        return "running"
    if state in LIVE_STATES:
        return None
    return f"its task {state}: {status.get('Err') or status.get('Message') or 'no reason given'}"


def service_spec(
    spec: PoolSpec, name: str, node_id: str, network: str, publish: bool
) -> dict[str, Any]:
    """The keyword arguments of APIClient.create_service for a pool on node `node_id`."""
    container = ContainerSpec(
        spec.image,
        env=spec.env,
        labels=spec.labels,  # the task's container carries the pool's labels, as with docker
        mounts=[Mount(target, source, type="bind") for source, target in spec.binds.items()]
        + [
            Mount(target, volume, type="volume", labels=spec.labels)
            for volume, target in spec.volumes.items()
        ],
        stop_signal="SIGTERM",
        stop_grace_period=STOP_TIMEOUT * 1_000_000_000,
        cap_add=list(CAP_ADD),
        # Swarm kills a task whose image health check fails (measured: exit 137, "unhealthy
        # container"): a restart decision that is the controller's, not Swarm's.
        healthcheck=Healthcheck(test=["NONE"]),
    )
    memory = parse_bytes(spec.memory_limit) if spec.memory_limit else None
    task = TaskTemplate(
        container,
        resources=Resources(mem_limit=memory) if memory else None,
        # Swarm must not restart it, here or elsewhere: the controller decides.
        restart_policy=RestartPolicy(condition="none"),
        placement=Placement(constraints=[f"node.id=={node_id}"]),
        log_driver=DriverConfig("json-file", LOG_OPTIONS),
        networks=[NetworkAttachmentConfig(network)],
    )
    # Bot ports on the node's own address (mode host): the routing mesh needs IPVS.
    ports = {port: (port, "tcp", "host") for port in spec.ports} if publish else None
    return {
        "task_template": task,
        "name": name,
        "labels": {**spec.labels, LABEL_NODE: node_id},
        "mode": ServiceMode("replicated", replicas=1),
        # Never two tasks of one pool: the old one stops before its replacement starts.
        "update_config": UpdateConfig(parallelism=1, order="stop-first"),
        "endpoint_spec": EndpointSpec(mode="dnsrr", ports=ports),
    }


def task_state(
    service: Mapping[str, Any] | None, tasks: Iterable[Mapping[str, Any]],
    lost: Collection[str] = frozenset(), known: Collection[str] | None = None,
) -> RuntimeState:  # fmt: skip
    """A pool's state from its service (its attributes, None: no service), its tasks and
    the ids of the nodes that are not `ready` (`lost`: down, unknown, disconnected):
    unreachable while a task of it was last seen live on such a node (whatever Swarm now
    wants of it: on a down node it sets the task's desired state to shutdown, but cannot
    stop it); running while the task Swarm wants running runs or is on its way (pending
    on its node included), and while no task is wanted yet because the service was just
    made or is being restarted (stop-first: the old task stops before its replacement is
    made); exited once the task ended (failed, complete, shutdown, rejected) or was scaled away.
    `known`: the ids of the swarm's nodes now; a pool pinned to none of them (its node
    removed, `docker node rm --force`, while lost) is unreachable too: its task may still
    run on that machine, and Swarm reports nothing of it any more."""
    if service is None:
        return RuntimeState.MISSING
    pinned = (service.get("Spec", {}).get("Labels") or {}).get(LABEL_NODE)
    if known is not None and pinned and pinned not in known:
        return RuntimeState.UNREACHABLE
    tasks = list(tasks)
    if any(t.get("NodeID") in lost and is_live(t) for t in tasks):
        return RuntimeState.UNREACHABLE
    spec = service.get("Spec", {})
    if spec.get("Mode", {}).get("Replicated", {}).get("Replicas", 1) == 0:
        return RuntimeState.EXITED
    task = current_task(tasks)
    if task is not None and task.get("DesiredState") == "running":
        return RuntimeState.RUNNING if is_live(task) else RuntimeState.EXITED
    updating = (service.get("UpdateStatus") or {}).get("State") == "updating"
    return RuntimeState.RUNNING if task is None or updating else RuntimeState.EXITED


def is_live(task: Mapping[str, Any]) -> bool:
    return task.get("Status", {}).get("State") in LIVE_STATES


def lost_nodes(nodes: Iterable[Node]) -> frozenset[str]:
    """The ids of the nodes whose tasks cannot be confirmed (not `ready`)."""
    return frozenset(node.id for node in nodes if node.state != "ready")


def task_address(task: Mapping[str, Any], network: str) -> str | None:
    """The task's address on the overlay `network` ("10.0.1.5/24" -> "10.0.1.5")."""
    for attachment in task.get("NetworksAttachments") or []:
        if attachment.get("Network", {}).get("Spec", {}).get("Name") == network:
            for address in attachment.get("Addresses") or []:
                return address.split("/")[0]
    return None
