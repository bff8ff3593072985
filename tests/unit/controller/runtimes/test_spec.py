"""A pool container's spec (controller/runtimes/spec.py): its per-bot cgroups' options."""

from __future__ import annotations

from pathlib import Path

from common.settings import ControllerSettings
from controller.runtimes.base import PoolLaunch
from controller.runtimes.spec import DockerOptions, pool_spec

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
