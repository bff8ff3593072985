"""A removed swarm pool's volume (POOL_STORAGE=node): emptied on its node, unless it may
still hold what someone needs.

A pool's directory is a volume on its node's own disk, one per pool incarnation
(`ftpool-pool-<poolId>-<incarnation>`, spec.pool_volume; `ftpool-pool-<poolId>` for a pool
an earlier controller made): which one a pool has is read from its service's own mounts
(`mounted_volume`), never derived again. When the pool is removed (its bots moved out, or
deleted: scale-in, cleanup, a drain, an upgrade by move) the volume would keep what was
left in it (deleted bots' archives with their config.json and exchange keys, logs) for
good: a manager cannot remove another node's volume through its Docker API. So, once the
pool's own task is confirmed gone, a one-shot service pinned to that node mounts only that
volume and empties it with a fixed command (the pool's own image, no network, no socket, a
read-only root), and is removed. The command refuses (exit 3) if a bot directory is still
in `bots/`: a bot whose directory could not leave (an evacuation whose agent was gone) has
its only copy there.

What stays is the empty named volume (`docker volume prune --all --filter
label=ftpool.pool` on the node removes it; no later pool mounts it). The decision is
`wipe_verdict`, pure; `wipe_volume` carries it out with a Docker client (blocking: run it
in a thread).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import docker.errors
from docker.types import ContainerSpec, Healthcheck, Mount, Placement, RestartPolicy, TaskTemplate

from controller.runtimes.spec import LABEL_POOL, POOL_MOUNT
from controller.runtimes.swarm_nodes import Node

LABEL_WIPE = "ftpool.wipe"  # the one-shot service emptying a removed pool's volume
KEPT = 3  # the command's exit status when a bot directory is still in the volume
# Fixed: nothing from outside reaches it. Deletes every entry below the mount without
# following a link (find's default) or leaving the volume's file system (-xdev).
WIPE_SCRIPT = (
    f"set -eu; cd {POOL_MOUNT}; "
    'if [ -d bots ] && [ -n "$(ls -A bots)" ]; then '
    f'echo "bot directories are still in bots/: the volume is kept" >&2; exit {KEPT}; fi; '
    f"find {POOL_MOUNT} -xdev -mindepth 1 -delete"
)
WIPE_TIMEOUT = 120.0  # seconds for the task to be scheduled, run and end
_ENDED = frozenset({"complete", "failed", "rejected", "shutdown", "orphaned", "remove"})


@dataclass(frozen=True, slots=True)
class Verdict:
    wipe: bool
    reason: str


def mounted_volume(spec: Mapping[str, Any]) -> str | None:
    """The volume a pool's service mounts at /pool (its `Spec`; None: a bind, or none)."""
    mounts = spec.get("TaskTemplate", {}).get("ContainerSpec", {}).get("Mounts") or []
    for mount in mounts:
        if mount.get("Target") == POOL_MOUNT and mount.get("Type") == "volume":
            return mount.get("Source") or None
    return None


def wipe_verdict(*, bots: int, abandoned: bool, node: Node | None, volume: str | None) -> Verdict:
    """Whether a removed pool's volume is emptied: never while the store still has bots in
    the pool, never for a pool a failover abandoned on a lost node (its directories may
    hold trades newer than the restore points its bots moved with: an operator's to look
    at), only when its volume's name is known from its service (never a guess: it could be
    another pool's), and only on a node that is in the swarm and ready (a one-shot task
    could not run elsewhere, and a lost node's volume may be the failover's only copy)."""
    if bots:
        return Verdict(False, f"the pool still has {bots} bot(s)")
    if abandoned:
        return Verdict(False, "abandoned on a lost node by a failover: kept for an operator")
    if volume is None:
        return Verdict(False, "its volume is not known (its service was gone)")
    if node is None:
        return Verdict(False, "its node is not known, or no longer in the swarm")
    if node.state != "ready":
        return Verdict(False, f"its node is {node.state}")
    return Verdict(True, "its bots left")


def wipe_service_spec(pool_id: str, volume: str, node_id: str, image: str) -> dict[str, Any]:
    """The keyword arguments of APIClient.create_service for the one-shot wipe of the
    pool's `volume`."""
    labels = {LABEL_WIPE: pool_id}
    container = ContainerSpec(
        image,
        command=["/bin/sh", "-c", WIPE_SCRIPT],  # the image's entrypoint replaced
        user="0",  # bots' files belong to their slots' users
        mounts=[Mount(POOL_MOUNT, volume, type="volume", no_copy=True)],
        labels=labels,
        read_only=True,
        healthcheck=Healthcheck(test=["NONE"]),
    )
    task = TaskTemplate(
        container,
        restart_policy=RestartPolicy(condition="none"),
        placement=Placement(constraints=[f"node.id=={node_id}"]),
    )
    return {"task_template": task, "name": wipe_service_name(pool_id), "labels": labels}


def wipe_service_name(pool_id: str) -> str:
    return f"ftpool-wipe-{pool_id}"


@dataclass(frozen=True, slots=True)
class WipeResult:
    wiped: bool
    detail: str


def wipe_volume(
    client: docker.DockerClient, pool_id: str, volume: str, node_id: str, image: str,
    timeout: float = WIPE_TIMEOUT,
) -> WipeResult:  # fmt: skip
    """Run the one-shot wipe of the pool's volume on its node, wait for its end, remove it."""
    name = wipe_service_name(pool_id)
    _remove_service(client, name)  # a wipe an earlier removal left
    service = client.api.create_service(**wipe_service_spec(pool_id, volume, node_id, image))
    try:
        deadline = time.monotonic() + timeout
        while True:
            tasks = client.api.tasks(filters={"service": service["ID"]})
            ended = [t for t in tasks if t.get("Status", {}).get("State") in _ENDED]
            if ended:
                return _result(ended[0])
            if time.monotonic() > deadline:
                return WipeResult(False, f"its task did not end within {timeout:.0f} s")
            time.sleep(0.5)
    finally:
        _remove_service(client, name)


def _result(task: dict[str, Any]) -> WipeResult:
    status = task.get("Status", {})
    code = status.get("ContainerStatus", {}).get("ExitCode")
    if status.get("State") == "complete" and code == 0:
        return WipeResult(True, "emptied")
    if code == KEPT:
        return WipeResult(False, "bot directories are still in it")
    return WipeResult(False, f"its task ended {status.get('State')} ({status.get('Err') or code})")


def _remove_service(client: docker.DockerClient, name: str) -> None:
    for service in client.services.list(filters={"name": name}):
        labels = service.attrs.get("Spec", {}).get("Labels") or {}
        if service.name == name and LABEL_WIPE in labels and LABEL_POOL not in labels:
            with contextlib.suppress(docker.errors.NotFound):
                service.remove()
