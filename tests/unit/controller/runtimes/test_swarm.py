"""The swarm runtime's pure parts: the service it makes and a pool's state from its tasks."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import docker
import pytest

from controller.errors import RuntimeFailure
from controller.runtimes import PoolLaunch, RuntimeState
from controller.runtimes.spec import DockerOptions, pool_spec, prepare_dirs
from controller.runtimes.swarm import SwarmRuntime
from controller.runtimes.swarm_nodes import Node
from controller.runtimes.swarm_tasks import (
    current_task,
    lost_nodes,
    service_spec,
    task_address,
    task_state,
)


def options(tmp_path: Path, **changes: object) -> DockerOptions:
    base = {
        "image": "freqtrade-pool:latest",
        "network": "ftpool",
        "pools_dir": tmp_path / "pools",
        "host_pools_dir": Path("/srv/pools"),
        "archive_dir": tmp_path / "archive",
        "host_backups_dir": Path("/srv/backups"),
        "memory_limit": "2g",
    }
    return DockerOptions(**{**base, **changes})  # type: ignore[arg-type]


LAUNCH = PoolLaunch(
    "pool-3", 4, 9020, "t" * 64, "ws://10.0.0.2:5000/api/agents/ws",
    agent_env={"HEARTBEAT_INTERVAL": "500"}, backup_dir=Path("/data/backups/pools/pool-3"),
    created_at=1796095800.123,  # 2026-12-01 03:30:00.123 UTC
)  # fmt: skip


def test_the_service_is_one_pinned_replica_that_swarm_never_restarts(tmp_path: Path) -> None:
    spec = service_spec(pool_spec(LAUNCH, options(tmp_path)), "freqtrade-pool-pool-3", "n1",
                        "ftpool", publish=False)  # fmt: skip
    task = spec["task_template"]
    assert spec["name"] == "freqtrade-pool-pool-3"
    assert spec["mode"] == {"replicated": {"Replicas": 1}}
    assert spec["endpoint_spec"] == {"Mode": "dnsrr"}
    assert spec["update_config"]["Order"] == "stop-first"
    labels = spec["labels"]
    assert (labels["ftpool.pool"], labels["ftpool.node"], "ftpool.version" in labels) == (
        "pool-3", "n1", True)  # fmt: skip
    assert task["RestartPolicy"]["Condition"] == "none"
    assert task["Placement"]["Constraints"] == ["node.id==n1"]
    assert [network["Target"] for network in task["Networks"]] == ["ftpool"]
    assert task["Resources"]["Limits"]["MemoryBytes"] == 2 << 30
    container = task["ContainerSpec"]
    assert container["Image"] == "freqtrade-pool:latest"
    assert container["Labels"]["ftpool.pool"] == "pool-3"
    assert container["CapabilityAdd"] == ["SYS_PTRACE", "SYS_NICE"]
    assert container["Healthcheck"]["Test"] == ["NONE"]  # Swarm kills no unhealthy pool
    env = dict(item.split("=", 1) for item in container["Env"])
    assert env["POOL_ID"] == "pool-3" and env["POOL_TOKEN"] == "t" * 64
    assert (env["POOL_CAPACITY"], env["POOL_PORT_START"]) == ("4", "9020")
    assert (env["HEARTBEAT_INTERVAL"], env["BACKUP_DIR"]) == ("500", "/backup")
    mounts = {m["Source"]: (m["Target"], m["Type"]) for m in container["Mounts"]}
    assert mounts == {
        "/srv/pools/pool-3": ("/pool", "bind"),
        "/srv/backups/pools/pool-3": ("/backup", "bind"),
    }


def test_on_node_storage_the_pools_directory_is_a_volume_of_its_node(tmp_path: Path) -> None:
    """POOL_STORAGE=node: /pool is a labelled volume its node's Docker makes; nothing of it
    on the controller's disk (only the backup target is shared)."""
    opts = options(tmp_path, node_storage=True)
    spec = service_spec(pool_spec(LAUNCH, opts), "s", "n1", "ftpool", publish=False)
    mounts = spec["task_template"]["ContainerSpec"]["Mounts"]
    assert [(m["Source"], m["Target"], m["Type"]) for m in mounts] == [
        ("/srv/backups/pools/pool-3", "/backup", "bind"),
        ("ftpool-pool-pool-3-mx452czf", "/pool", "volume"),  # this incarnation's own
    ]
    assert mounts[1]["VolumeOptions"]["Labels"]["ftpool.pool"] == "pool-3"
    launch = replace(LAUNCH, backup_dir=None)
    prepare_dirs(launch, opts)
    assert not (tmp_path / "pools").exists()


def test_published_bot_ports_bind_on_the_node_not_the_routing_mesh(tmp_path: Path) -> None:
    spec = service_spec(pool_spec(LAUNCH, options(tmp_path, memory_limit="")), "s", "n1",
                        "ftpool", publish=True)  # fmt: skip
    ports = spec["endpoint_spec"]["Ports"]
    assert spec["endpoint_spec"]["Mode"] == "dnsrr"
    assert [(p["PublishedPort"], p["TargetPort"], p["PublishMode"]) for p in ports] == [
        (port, port, "host") for port in range(9020, 9024)
    ]
    assert "Resources" not in spec["task_template"]


def task(index: int, state: str, desired: str = "running") -> dict[str, object]:
    return {"Version": {"Index": index}, "DesiredState": desired, "Status": {"State": state}}


@pytest.mark.parametrize(
    ("tasks", "expected"),
    [
        ([task(5, "running")], RuntimeState.RUNNING),
        ([task(5, "pending")], RuntimeState.RUNNING),  # on its way on its node
        ([task(5, "starting")], RuntimeState.RUNNING),
        ([task(5, "failed", "shutdown")], RuntimeState.EXITED),
        ([task(5, "complete", "shutdown")], RuntimeState.EXITED),
        ([task(5, "running", "shutdown")], RuntimeState.EXITED),  # being stopped
        ([task(9, "rejected")], RuntimeState.EXITED),
        ([task(9, "running"), task(4, "failed", "shutdown")], RuntimeState.RUNNING),
        ([task(3, "running", "shutdown"), task(8, "failed", "shutdown")], RuntimeState.EXITED),
        # The replaced task changes last (shut down): the one Swarm wants running counts.
        ([task(9, "shutdown", "shutdown"), task(7, "starting")], RuntimeState.RUNNING),
        ([task(9, "running", "shutdown"), task(7, "failed")], RuntimeState.EXITED),
        ([], RuntimeState.RUNNING),  # just made: Swarm has not made its task yet
    ],
)
def test_a_pool_state_from_its_newest_task(tasks: list, expected: RuntimeState) -> None:
    assert task_state(service(), tasks) is expected


def service(replicas: int = 1, update: str | None = None) -> dict[str, object]:
    attrs: dict[str, object] = {"Spec": {"Mode": {"Replicated": {"Replicas": replicas}}}}
    if update:
        attrs["UpdateStatus"] = {"State": update}
    return attrs


@pytest.mark.parametrize(
    ("attrs", "tasks", "expected"),
    [
        # Restarted (stop-first): the old task stops before its replacement is made.
        (service(update="updating"), [task(9, "running", "shutdown")], RuntimeState.RUNNING),
        (service(update="updating"), [task(9, "failed", "shutdown")], RuntimeState.RUNNING),
        (service(update="completed"), [task(9, "failed", "shutdown")], RuntimeState.EXITED),
        # The replacement failed: Swarm pauses the update.
        (service(update="paused"), [task(9, "failed", "shutdown")], RuntimeState.EXITED),
        (service(replicas=0), [], RuntimeState.EXITED),  # stopped: scaled to nothing
        (service(replicas=0), [task(9, "running", "shutdown")], RuntimeState.EXITED),
    ],
)
def test_a_pool_being_restarted_or_stopped(
    attrs: dict, tasks: list, expected: RuntimeState
) -> None:
    assert task_state(attrs, tasks) is expected


def on(node: str, t: dict[str, object]) -> dict[str, object]:
    return {**t, "NodeID": node}


@pytest.mark.parametrize(
    ("attrs", "tasks", "expected"),
    [
        # A down node's task: Swarm wants it shut down but cannot tell whether it still
        # runs (measured: a cut-off node runs its tasks on for the whole partition).
        (service(), [on("n2", task(9, "running", "shutdown"))], RuntimeState.UNREACHABLE),
        (service(), [on("n2", task(9, "running"))], RuntimeState.UNREACHABLE),
        (service(), [on("n2", task(9, "starting"))], RuntimeState.UNREACHABLE),
        # Scaled to nothing, or being replaced, while its task was cut off: not confirmed.
        (service(replicas=0), [on("n2", task(9, "running", "shutdown"))], RuntimeState.UNREACHABLE),
        (
            service(update="updating"),
            [on("n2", task(9, "running", "shutdown"))],
            RuntimeState.UNREACHABLE,
        ),
        # Seen ended before its node went: confirmed.
        (service(), [on("n2", task(9, "failed", "shutdown"))], RuntimeState.EXITED),
        (
            service(),
            [on("n2", task(9, "complete", "shutdown")), on("n1", task(10, "running"))],
            RuntimeState.RUNNING,
        ),
        # A pending task pinned to the down node was never placed on it.
        (service(), [task(9, "pending")], RuntimeState.RUNNING),
        # Its node up again (ready): as usual.
        (service(), [on("n1", task(9, "running", "shutdown"))], RuntimeState.EXITED),
    ],
)
def test_a_pool_on_a_node_that_is_not_ready_is_unreachable(
    attrs: dict, tasks: list, expected: RuntimeState
) -> None:
    assert task_state(attrs, tasks, lost={"n2"}) is expected


def test_the_nodes_whose_tasks_cannot_be_confirmed() -> None:
    def node(node_id: str, state: str) -> Node:
        return Node(node_id, node_id, state, "active", 1 << 30, "10.0.0.1", {})

    nodes = [node("n1", "ready"), node("n2", "down"), node("n3", "unknown"),
             node("n4", "disconnected")]  # fmt: skip
    assert lost_nodes(nodes) == {"n2", "n3", "n4"}


def test_without_a_service_the_pool_is_missing() -> None:
    assert task_state(None, [task(1, "running")]) is RuntimeState.MISSING
    assert current_task([]) is None


def test_a_task_address_on_the_overlay() -> None:
    attached = {"NetworksAttachments": [
        {"Network": {"Spec": {"Name": "ingress"}}, "Addresses": ["10.255.0.4/16"]},
        {"Network": {"Spec": {"Name": "ftpool"}}, "Addresses": ["10.0.1.5/24"]},
    ]}  # fmt: skip
    assert task_address(attached, "ftpool") == "10.0.1.5"
    assert task_address(attached, "other") is None
    assert task_address({}, "ftpool") is None


async def test_an_unreachable_daemon_is_a_runtime_failure(tmp_path: Path) -> None:
    client = docker.DockerClient(base_url=f"unix://{tmp_path}/no.sock", version="1.41", timeout=5)
    runtime = SwarmRuntime(options(tmp_path), client=client)
    calls = [
        runtime.inspect("pool-3"), runtime.create(LAUNCH), runtime.restart("pool-3"),
        runtime.restart_agent("pool-3"), runtime.stop("pool-3"), runtime.remove("pool-3"),
        runtime.discard("pool-3"), runtime.abandon("pool-3"), runtime.stats("pool-3"),
        runtime.list(),
        runtime.node_census(),
    ]  # fmt: skip
    for call in calls:
        with pytest.raises(RuntimeFailure, match=r"^docker: "):
            await call
    assert (runtime.bot_host("pool-3"), runtime.pinned_node("pool-3")) == (
        "freqtrade-pool-pool-3", None)  # fmt: skip
    await runtime.close()


class FakeService:
    """A pool's service as the Docker SDK gives it: what was done to it is recorded."""

    id = "svc1"

    def __init__(self, replicas: int = 1) -> None:
        self.attrs = {"Spec": {"Labels": {"ftpool.pool": "pool-3", "ftpool.node": "n2"},
                               "Mode": {"Replicated": {"Replicas": replicas}}}}  # fmt: skip
        self.done: list[str] = []

    def scale(self, replicas: int) -> None:
        self.done.append(f"scale {replicas}")

    def reload(self) -> None:
        pass

    def remove(self) -> None:
        self.done.append("remove")


class FakeSwarm:
    """A manager's view: pool-3's task runs on n2, which is down (cut off)."""

    def __init__(
        self, nodes: tuple[tuple[str, str], ...] = (("n1", "ready"), ("n2", "down")),
        tasks: tuple[dict[str, object], ...] = (on("n2", task(9, "running", "shutdown")),),
    ) -> None:  # fmt: skip
        self.service = FakeService()
        outer = self

        class Services:
            def get(self, name: str) -> FakeService:
                assert name == "freqtrade-pool-pool-3"
                return outer.service

        class Nodes:
            def list(self) -> list[object]:
                return [type("N", (), {"attrs": {"ID": i, "Status": {"State": s}}})()
                        for i, s in nodes]  # fmt: skip

            def get(self, node_id: str) -> object:
                return next(n for n in self.list() if n.attrs["ID"] == node_id)  # type: ignore[attr-defined]

        class Api:
            def tasks(self, filters: dict[str, str]) -> list[dict[str, object]]:
                return list(tasks)

        self.services, self.nodes, self.api = Services(), Nodes(), Api()


async def test_a_pool_on_a_down_node_is_unreachable_never_restarted_and_can_be_abandoned(
    tmp_path: Path,
) -> None:
    swarm = FakeSwarm()
    runtime = SwarmRuntime(options(tmp_path), client=swarm)  # type: ignore[arg-type]
    assert await runtime.inspect("pool-3") is RuntimeState.UNREACHABLE
    # Not confirmable: a restart or a stop fails at once, and nothing is scaled back up.
    for call in (runtime.restart("pool-3"), runtime.stop("pool-3"), runtime.discard("pool-3")):
        with pytest.raises(RuntimeFailure, match="unreachable"):
            await call
    assert "scale 1" not in swarm.service.done and "remove" not in swarm.service.done
    await runtime.abandon("pool-3")  # its agent fenced: given up without confirmation
    assert swarm.service.done[-1] == "remove"
    assert runtime.pinned_node("pool-3") is None


@pytest.mark.parametrize(
    "last_seen",
    [task(9, "running"), task(9, "running", "shutdown"), task(9, "orphaned", "shutdown")],
)
async def test_a_pool_pinned_to_a_node_removed_from_the_swarm_is_unreachable(
    tmp_path: Path, last_seen: dict[str, object]
) -> None:
    """`docker node rm --force` of a lost node: it is gone from the node list (so from
    the nodes not ready), and its task may still run on that machine."""
    swarm = FakeSwarm(nodes=(("n1", "ready"),), tasks=(on("n2", last_seen),))
    runtime = SwarmRuntime(options(tmp_path), client=swarm)  # type: ignore[arg-type]
    assert await runtime.inspect("pool-3") is RuntimeState.UNREACHABLE
    # Not in the pools that run (what the watch reports as alive) either.
    assert task_state(swarm.service.attrs, [on("n2", last_seen)], known={"n1"}) \
        is RuntimeState.UNREACHABLE  # fmt: skip
