"""The images of swarm pools: a service runs its image by id, and is started again in
place on another image (a rolling upgrade's recreate method)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import docker.errors
import pytest

from controller.errors import RuntimeFailure
from controller.runtimes.base import ImageInfo
from controller.runtimes.swarm import SwarmRuntime
from controller.runtimes.swarm_images import LABEL_IMAGE, on_image, spec_image
from controller.runtimes.swarm_tasks import task_start
from tests.unit.controller.runtimes.test_swarm import options

NEW = ImageInfo("freqtrade-pool:v2", "sha256:" + "2" * 64)
OLD = ImageInfo("freqtrade-pool:latest", "sha256:" + "1" * 64)
# The volume of a pool an earlier controller made (before pools' incarnations named it).
OLD_NAMED = [{"Type": "volume", "Source": "ftpool-pool-pool-3", "Target": "/pool"}]


def task(state: str, desired: str = "running", index: int = 5, err: str = "", id: str = "") -> dict:
    return {"ID": id or f"t{index}", "DesiredState": desired, "Version": {"Index": index},
            "Status": {"State": state, "Err": err}}  # fmt: skip


OLD_TASK = task("shutdown", "shutdown", 3)


@pytest.mark.parametrize(
    ("tasks", "start"),
    [
        ([OLD_TASK], None),  # only the old one, gone: the new one is not made yet
        ([OLD_TASK, task("preparing")], None),
        ([OLD_TASK, task("running", index=7)], "running"),
        ([OLD_TASK, task("rejected", err="No such image: sha256:22")],
         "its task rejected: No such image: sha256:22"),
        # Swarm (restart condition none) wants a rejected task shut down at once.
        ([OLD_TASK, task("rejected", "shutdown", err="No such image: sha256:22")],
         "its task rejected: No such image: sha256:22"),
        ([OLD_TASK, task("failed")], "its task failed: no reason given"),
    ],
)  # fmt: skip
def test_how_a_services_start_stands(tasks: list, start: str | None) -> None:
    assert task_start(tasks, {OLD_TASK["ID"]}) == start


def spec(image: str, labels: dict[str, str] | None = None, replicas: int = 0) -> dict:
    return {
        "Name": "freqtrade-pool-pool-3",
        "Labels": {"ftpool.pool": "pool-3", "ftpool.node": "n2", **(labels or {})},
        "TaskTemplate": {"ContainerSpec": {"Image": image, "Env": ["A=1"], "Mounts": OLD_NAMED},
                         "Placement": {"Constraints": ["node.id==n2"]}},
        "Mode": {"Replicated": {"Replicas": replicas}},
    }  # fmt: skip


def test_a_service_runs_its_image_by_id_and_keeps_the_reference_asked_for() -> None:
    assert spec_image(spec(OLD.id, {LABEL_IMAGE: OLD.ref})) == (OLD.ref, OLD.id)
    assert spec_image(spec("freqtrade-pool:latest")) == ("freqtrade-pool:latest",) * 2
    before = spec(OLD.id, {LABEL_IMAGE: OLD.ref})
    after = on_image(before, NEW, 1)
    assert spec_image(after) == (NEW.ref, NEW.id)
    assert after["Mode"] == {"Replicated": {"Replicas": 1}}
    # The rest as it was: the same node, environment (its agent's token) and labels.
    assert after["TaskTemplate"]["Placement"] == before["TaskTemplate"]["Placement"]
    assert after["TaskTemplate"]["ContainerSpec"]["Env"] == ["A=1"]
    assert after["Labels"]["ftpool.node"] == "n2"
    assert spec_image(before) == (OLD.ref, OLD.id)  # a copy: the old spec untouched


class Client:
    """A manager with pool-3's service scaled to none; its next task is `outcome`."""

    def __init__(self, outcome: dict, live: bool = False) -> None:
        self.updates: list[dict[str, Any]] = []
        service = type("S", (), {"id": "svc", "reload": lambda s: None,
                                 "attrs": {"Spec": spec(OLD.id, {LABEL_IMAGE: OLD.ref}),
                                           "Version": {"Index": 41}}})()  # fmt: skip
        old = task("running", index=3) if live else OLD_TASK
        outer = self

        class Services:
            def get(self, name: str) -> Any:
                return service

        class Images:
            def get(self, ref: str) -> Any:
                if ref not in (NEW.ref, NEW.id):
                    raise docker.errors.ImageNotFound(ref)
                return type("I", (), {"id": NEW.id})()

        class Api:
            def tasks(self, filters: dict) -> list[dict]:
                return [old, outcome] if outer.updates else [old]

            def update_service(self, service_id: str, version: int, **spec: Any) -> None:
                outer.updates.append({"version": version, **spec})

        self.services, self.images, self.api = Services(), Images(), Api()


async def test_a_stopped_pool_starts_again_in_place_on_the_new_image(tmp_path: Path) -> None:
    client = Client(task("running", index=9))
    runtime = SwarmRuntime(options(tmp_path), client=client)  # type: ignore[arg-type]
    assert await runtime.restart_on("pool-3", NEW.ref)
    [update] = client.updates
    assert update["version"] == 41 and update["mode"] == {"Replicated": {"Replicas": 1}}
    assert update["task_template"]["ContainerSpec"]["Image"] == NEW.id
    assert update["task_template"]["Placement"] == {"Constraints": ["node.id==n2"]}
    assert update["labels"][LABEL_IMAGE] == NEW.ref
    # Its own volume, whatever its name: an earlier controller's pool keeps its bots' files.
    assert update["task_template"]["ContainerSpec"]["Mounts"] == OLD_NAMED


async def test_a_task_its_node_rejects_fails_the_start_at_once(tmp_path: Path) -> None:
    """The image missing on the pool's node: Swarm rejects the task; no wait for a timeout."""
    client = Client(task("rejected", index=9, err="No such image: " + NEW.id))
    runtime = SwarmRuntime(options(tmp_path), client=client)  # type: ignore[arg-type]
    with pytest.raises(RuntimeFailure, match="did not start: its task rejected: No such image"):
        await runtime.restart_on("pool-3", NEW.ref)


async def test_never_beside_a_task_that_still_runs_nor_on_an_image_the_manager_lacks(
    tmp_path: Path,
) -> None:
    client = Client(task("running", index=9), live=True)
    runtime = SwarmRuntime(options(tmp_path), client=client)  # type: ignore[arg-type]
    with pytest.raises(RuntimeFailure, match="still runs a task"):
        await runtime.restart_on("pool-3", NEW.ref)
    with pytest.raises(RuntimeFailure, match="no image freqtrade-pool:v3 on the manager"):
        await runtime.restart_on("pool-3", "freqtrade-pool:v3")
    assert not client.updates
