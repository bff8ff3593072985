"""The images swarm pools run, for rolling upgrades (controller/upgrade/).

A service runs its image by id (`sha256:...`, resolved on the manager; the reference it
was asked for is its label `ftpool.image`): each node then runs exactly that image from
its own copy, never pulls (Swarm skips the pull of an image named by id), and the task
of a node without it is rejected at once ("No such image") instead of waiting on a
registry, `Preparing`. An image id is the same on every node that loaded the image
(`docker save | docker load`) or pulled it: so every node needs the image, under any name.

In place (`restart_on`), a pool's service, scaled to none and its task confirmed gone
(`stop`), is updated to the new image and to one replica in one step: a new task on the
same node (its placement is unchanged), with its volume and its agent's token; then it is
waited for until it runs, or fails with what Swarm says of its task.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Collection, Mapping
from typing import Any

import docker.errors

from controller.errors import RuntimeFailure
from controller.runtimes.base import ImageInfo
from controller.runtimes.swarm_tasks import LIVE_STATES, task_start

LABEL_IMAGE = "ftpool.image"
START_TIMEOUT = 60.0  # seconds for a task to run once made: a container start takes a few


def spec_image(spec: Mapping[str, Any]) -> tuple[str, str]:
    """A service's image as its spec names it: (the reference asked for, what it runs: an
    image id, or for a service made before ids were used, that reference)."""
    runs = spec.get("TaskTemplate", {}).get("ContainerSpec", {}).get("Image", "")
    return (spec.get("Labels") or {}).get(LABEL_IMAGE) or runs, runs


def on_image(spec: Mapping[str, Any], image: ImageInfo, replicas: int) -> dict[str, Any]:
    """A copy of a service's spec running `image` by id, with `replicas` tasks."""
    new = copy.deepcopy(dict(spec))
    new["TaskTemplate"]["ContainerSpec"]["Image"] = image.id
    new["Labels"] = {**(new.get("Labels") or {}), LABEL_IMAGE: image.ref}
    new["Mode"] = {"Replicated": {"Replicas": replicas}}
    return new


class ServiceImages:
    """SwarmRuntime's part for images (a mixin: the runtime gives the rest)."""

    has_images = True
    # From SwarmRuntime: client, _run, resolve_image, service_name, _service, _tasks.
    client: Any

    def pinned_image(self, ref: str) -> tuple[str, dict[str, str]]:
        """What a new service runs for `ref`: the image's id on the manager (and the label
        that keeps `ref`), or `ref` as it is if the manager has no such image."""
        try:
            return self.client.images.get(ref).id, {LABEL_IMAGE: ref}
        except docker.errors.ImageNotFound:
            return ref, {}

    async def image_of(self, pool_id: str) -> ImageInfo | None:
        def image_of() -> tuple[str, str] | None:
            service = self._service(pool_id)
            return None if service is None else spec_image(service.attrs.get("Spec", {}))

        found = await self._run(image_of)
        if found is None:
            return None
        ref, runs = found
        if runs.startswith("sha256:"):
            return ImageInfo(ref, runs)
        return await self.resolve_image(runs)  # by its tag, as the manager sees it now

    async def restart_on(self, pool_id: str, image: str) -> bool:
        target = await self.resolve_image(image)
        if target is None:
            raise RuntimeFailure(f"swarm: no image {image} on the manager")

        def update() -> bool:
            service = self._service(pool_id)
            if service is None:
                return False  # nothing to update in place: it is made anew
            tasks = self._tasks(service)
            if any(t.get("Status", {}).get("State") in LIVE_STATES for t in tasks):
                raise RuntimeFailure(f"swarm: {self.service_name(pool_id)} still runs a task")
            service.reload()
            spec = on_image(service.attrs["Spec"], target, 1)
            self.client.api.update_service(
                service.id, service.attrs["Version"]["Index"], task_template=spec["TaskTemplate"],
                name=spec["Name"], labels=spec["Labels"], mode=spec["Mode"],
                update_config=spec.get("UpdateConfig"), endpoint_spec=spec.get("EndpointSpec"),
            )  # fmt: skip
            self.wait_started(pool_id, {t["ID"] for t in tasks})
            return True

        return await self._run(update)

    def wait_started(self, pool_id: str, before: Collection[str] = frozenset()) -> None:
        """Wait until the pool's new task (not one of `before`) runs; RuntimeFailure if it
        was rejected or failed (an image missing on its node, say), or still does not run
        after START_TIMEOUT."""
        name = self.service_name(pool_id)
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            service = self._service(pool_id)
            if service is None:
                raise RuntimeFailure(f"swarm: {name} was removed while it started")
            start = task_start(self._tasks(service), before)
            if start == "running":
                return
            if start is not None:
                raise RuntimeFailure(f"swarm: {name} did not start: {start}")
            if time.monotonic() > deadline:
                states = sorted(str(t.get("Status", {}).get("State")) for t in self._tasks(service))
                raise RuntimeFailure(f"swarm: {name} did not start within {START_TIMEOUT:g} s "
                                     f"(its tasks: {', '.join(states) or 'none'})")  # fmt: skip
            time.sleep(0.25)
