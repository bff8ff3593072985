"""Where a swarm pool's directory is (POOL_STORAGE=node): a volume on its node, one per
pool incarnation, found as an operator finds it: the one its service mounts at /pool, or,
once its service is gone, by its label `ftpool.pool=<poolId>` (docs/swarm.md)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import docker

from controller.runtimes.spec import LABEL_POOL
from controller.runtimes.swarm_volumes import mounted_volume


def service_volume(client: docker.DockerClient, pool_id: str) -> str:
    """The volume the pool's service mounts (`client`: a manager's)."""
    services = client.services.list(filters={"label": f"{LABEL_POOL}={pool_id}"})
    [service] = [s for s in services if s.attrs["Spec"]["Labels"].get(LABEL_POOL) == pool_id]
    volume = mounted_volume(service.attrs["Spec"])
    assert volume, service.attrs["Spec"]
    return volume


def volume_dir(client: docker.DockerClient, pool_id: str) -> Path:
    """The pool's directory as the node keeps it (its service's volume on `client`'s node)."""
    return mountpoint(client.volumes.get(service_volume(client, pool_id)))


def labelled_volumes(client: docker.DockerClient, pool_id: str) -> list[Any]:
    """Every volume of a pool of that number on `client`'s node, its removed ones too."""
    return client.volumes.list(filters={"label": f"{LABEL_POOL}={pool_id}"})


def mountpoint(volume: Any) -> Path:
    return Path(volume.attrs["Mountpoint"])
