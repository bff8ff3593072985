"""A pool container's spec (controller/runtimes/spec.py): its per-bot cgroups' options, and
the name of its volume on its node (POOL_STORAGE=node)."""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path

import pytest

from common.settings import ControllerSettings
from controller.runtimes.base import PoolLaunch
from controller.runtimes.spec import DockerOptions, incarnation, pool_spec, pool_volume

LAUNCH = PoolLaunch("pool-3", 10, 9000, "t" * 64, "ws://127.0.0.1:5000/api/agents/ws")


def options(**over: object) -> DockerOptions:
    base = DockerOptions(
        image="freqtrade-pool:latest", network="host", pools_dir=Path("/data/pools"),
        host_pools_dir=Path("/data/pools"), archive_dir=Path("/data/archive"),
    )  # fmt: skip
    return DockerOptions(**{**{f: getattr(base, f) for f in base.__slots__}, **over})  # type: ignore[arg-type]


def test_without_cgroups_the_pool_is_as_before():
    spec = pool_spec(LAUNCH, options())
    assert spec.binds == {"/data/pools/pool-3": "/pool"}
    assert (spec.cgroup_parent, spec.writable_cgroups) == ("", False)
    assert "POOL_CGROUP" not in spec.env


def test_v1_binds_the_pools_own_parent_of_each_hierarchy_never_a_root():
    spec = pool_spec(LAUNCH, options(cgroups="v1", cgroup_root=Path("/host/cgroup")))
    assert spec.cgroup_parent == "/ftpool/pool-3"
    assert spec.binds == {
        "/data/pools/pool-3": "/pool",
        "/host/cgroup/memory/ftpool/pool-3": "/cgroup/memory",
        "/host/cgroup/cpu/ftpool/pool-3": "/cgroup/cpu",
        "/host/cgroup/cpuacct/ftpool/pool-3": "/cgroup/cpuacct",
    }
    assert spec.env["POOL_CGROUP"] == "v1" and spec.env["POOL_CGROUP_PARENT"] == "/ftpool/pool-3"
    assert not spec.writable_cgroups


def test_v2_asks_for_a_private_writable_cgroup_and_binds_nothing():
    spec = pool_spec(LAUNCH, options(cgroups="v2"))
    assert spec.writable_cgroups and spec.cgroup_parent == ""
    assert spec.binds == {"/data/pools/pool-3": "/pool"} and spec.env["POOL_CGROUP"] == "v2"


def test_a_swarm_service_never_gets_cgroups(tmp_path: Path):
    env = {"BOT_BASE_DIR": str(tmp_path), "POOL_CGROUPS": "v1"}
    assert DockerOptions.from_settings(ControllerSettings.from_env(env)).cgroups == "v1"
    swarm = ControllerSettings.from_env(
        {**env, "POOL_RUNTIME": "swarm", "AGENT_CONTROLLER_URL": "ws://c:5000/api/agents/ws"}
    )
    assert DockerOptions.from_settings(swarm).cgroups == "off"


# Docker's rule for a volume's name (daemon/names: RestrictedNamePattern).
DOCKER_NAME = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]+$")
CREATED = 1796095800.123  # 2026-12-01 03:30:00.123 UTC


@pytest.mark.parametrize(
    ("created_at", "suffix"),
    [(CREATED, "mx452czf"), (CREATED + 0.001, "mx452czg"), (0.0, "0"), (36**8 / 1000, "100000000")],
)
def test_a_pools_incarnation_is_its_creation_in_milliseconds_base_36(
    created_at: float, suffix: str
) -> None:
    assert incarnation(created_at) == suffix


def test_each_incarnation_of_a_pool_number_has_its_own_valid_volume_name() -> None:
    first, again = pool_volume("pool-2", CREATED), pool_volume("pool-2", CREATED)
    later = pool_volume("pool-2", CREATED + 0.001)  # the number reused a millisecond later
    assert first == again == "ftpool-pool-pool-2-mx452czf"  # every start of the same record
    assert later != first and pool_volume("pool-12", CREATED) != first
    assert first != "ftpool-pool-pool-2"  # never an earlier controller's name of the number
    assert all(DOCKER_NAME.match(name) for name in (first, later))
    # As the store gives it back (SQLite REAL: the same double), the same name.
    assert pool_volume("pool-2", float(repr(CREATED))) == first


def test_node_storage_mounts_the_launchs_own_incarnation() -> None:
    launch = replace(LAUNCH, created_at=CREATED)
    spec = pool_spec(launch, options(node_storage=True, network="ftpool"))
    assert spec.volumes == {"ftpool-pool-pool-3-mx452czf": "/pool"} and spec.binds == {}
    assert spec.labels["ftpool.pool"] == "pool-3"  # found by label: docs/swarm.md
