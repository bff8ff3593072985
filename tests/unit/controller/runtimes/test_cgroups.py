"""The Docker host's side of per-bot cgroups (controller/runtimes/cgroups.py): the mode
POOL_CGROUPS gives on a daemon (the systemd driver refused), and the pools' parent groups
removed on a directory tree of the test's own (a file in a directory stands for a process:
rmdir is refused either way)."""

from __future__ import annotations

from pathlib import Path

import pytest

from controller.runtimes.cgroups import (
    CgroupsUnsupported,
    DaemonCgroups,
    PoolGroups,
    choose_mode,
    decide_mode,
    probe_view,
    remove_pool_groups,
    stale_pools,
)
from controller.runtimes.docker import DockerOptions, DockerRuntime

HIERARCHIES = ("memory", "cpu", "cpuacct", "pids", "systemd", "unified")
V1 = DaemonCgroups("1", "cgroupfs", "20.10.24+dfsg1")
V1_SYSTEMD = DaemonCgroups("1", "systemd", "24.0.7")
V2 = DaemonCgroups("2", "systemd", "28.0.1")
V2_OLD = DaemonCgroups("2", "cgroupfs", "27.5.1")


def test_off_asks_nothing_and_auto_takes_what_the_daemon_gives():
    assert choose_mode("off", V1_SYSTEMD, "unseen") == ("off", "")
    assert choose_mode("auto", V1, None) == ("v1", "")
    assert choose_mode("auto", V2, None) == ("v2", "")  # no parent: any driver


@pytest.mark.parametrize(
    ("daemon", "problem", "why"),
    [
        (V1_SYSTEMD, None, "cgroup driver is systemd (docker info: CgroupDriver)"),
        (V1, "the controller cannot make /x/memory/ftpool", "cannot make /x/memory/ftpool"),
        (V2_OLD, None, "need Docker >= 28.0, the daemon is 27.5.1"),
    ],
)
def test_auto_falls_back_to_off_saying_why(daemon: DaemonCgroups, problem, why: str):
    mode, reason = choose_mode("auto", daemon, problem)
    assert mode == "off" and why in reason


def test_the_systemd_driver_is_refused_for_v1_with_what_to_do():
    with pytest.raises(CgroupsUnsupported) as refused:
        choose_mode("v1", V1_SYSTEMD, None)
    message = str(refused.value)
    assert message.startswith("POOL_CGROUPS=v1: the Docker daemon's cgroup driver is systemd")
    for what in ("native.cgroupdriver=cgroupfs", "POOL_CGROUPS=off", "auto"):
        assert what in message


@pytest.mark.parametrize(
    ("requested", "daemon", "why"),
    [("v1", V2, "cgroups are v2"), ("v2", V1, "cgroups are v1"), ("v2", V2_OLD, "28.0")],
)
def test_an_explicit_mode_the_daemon_cannot_give_stops_the_controller(requested, daemon, why):
    with pytest.raises(CgroupsUnsupported, match=why):
        choose_mode(requested, daemon, None)


def test_explicit_v1_runs_though_the_controller_cannot_remove_the_groups():
    assert choose_mode("v1", V1, "the controller cannot make ...") == ("v1", "")


def test_docker_info_read_as_the_daemon_says_it():
    info = {"CgroupVersion": "2", "CgroupDriver": "systemd", "ServerVersion": "28.3.0"}
    assert DaemonCgroups.from_info(info) == DaemonCgroups("2", "systemd", "28.3.0")
    assert DaemonCgroups.from_info({}).version == "1"  # before Docker 20.10: v1 alone
    assert DaemonCgroups("2", "", "garbage").major == 0


def host(tmp_path: Path, pools: dict[str, list[str]]) -> Path:
    """A host's hierarchies: each pool's parent with the groups below it (Docker makes it
    in every one, the cgroup2 mount's included)."""
    (tmp_path / "net_cls").mkdir(parents=True)  # one Docker did not use
    for hierarchy in HIERARCHIES:
        (tmp_path / hierarchy / "ftpool").mkdir(parents=True)
        (tmp_path / hierarchy / "ftpool" / "cgroup.procs").touch()
        for pool, groups in pools.items():
            for group in ["", *groups]:
                (tmp_path / hierarchy / "ftpool" / pool / group).mkdir(parents=True, exist_ok=True)
    return tmp_path


def test_the_view_must_be_the_hosts_hierarchies(tmp_path: Path):
    assert "cannot make" in str(probe_view(tmp_path / "nowhere"))
    (tmp_path / "memory").mkdir()  # a plain directory, no cgroup: ftpool made but no procs
    assert "is not a cgroup" in str(probe_view(tmp_path))
    assert probe_view(host(tmp_path / "real", {})) is None
    assert decide_mode("auto", {"CgroupVersion": "1", "CgroupDriver": "cgroupfs"},
                       tmp_path / "nowhere") == "off"  # fmt: skip


def test_a_pools_groups_go_in_every_hierarchy_and_no_other_pools(tmp_path: Path):
    view = host(tmp_path, {"pool-1": ["cid-a/bot-x", "cid-a/bot-y", "cid-b"], "pool-2": ["c"]})
    assert remove_pool_groups(view, "pool-1") == []
    for hierarchy in HIERARCHIES:
        assert sorted(p.name for p in (view / hierarchy / "ftpool").iterdir()) == [
            "cgroup.procs", "pool-2"]  # fmt: skip
    assert remove_pool_groups(view, "pool-1") == []  # again: nothing left, nothing said


@pytest.mark.parametrize("pool_id", ["..", "../memory", "a/b", "", "-x", "x" * 65])
def test_only_a_pool_id_names_a_group(tmp_path: Path, pool_id: str):
    with pytest.raises(ValueError, match="not a pool id"):
        remove_pool_groups(host(tmp_path, {}), pool_id)
    assert not PoolGroups(tmp_path).remove(pool_id)  # the runtime's removal goes on
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([*HIERARCHIES, "net_cls"])


def test_a_busy_group_stays_until_a_later_sweep(tmp_path: Path):
    view = host(tmp_path, {"pool-1": ["cid/bot-x", "cid/bot-y"]})
    held = view / "memory" / "ftpool" / "pool-1" / "cid" / "bot-x" / "tasks"
    held.touch()  # a process still in it
    groups = PoolGroups(view, tries=2, pause=0)
    assert not groups.remove("pool-1")
    assert groups.busy == {"pool-1"}
    assert sorted(p.name for p in held.parent.parent.iterdir()) == ["bot-x"]  # bot-y went
    assert not (view / "unified" / "ftpool" / "pool-1").exists()
    assert groups.sweep() == [] and groups.busy == {"pool-1"}
    held.unlink()  # its process exited
    assert groups.sweep() == ["pool-1"] and groups.busy == set()
    assert not (view / "memory" / "ftpool" / "pool-1").exists()


def test_the_start_sweeps_the_pools_that_no_longer_exist(tmp_path: Path):
    view = host(tmp_path, {"pool-1": ["c"], "pool-2": [], "pool-3": ["c/bot-z"]})
    (view / "pids" / "ftpool" / "pool-4").mkdir()  # in one hierarchy only: found there
    (view / "cpu" / "ftpool" / "not an id").mkdir()  # not ours: left alone
    assert stale_pools(view, {"pool-2"}) == ["pool-1", "pool-3", "pool-4"]
    assert PoolGroups(view).sweep({"pool-2"}) == ["pool-1", "pool-3", "pool-4"]
    assert not (view / "pids" / "ftpool" / "pool-4").exists()
    assert sorted(p.name for p in (view / "cpu" / "ftpool").iterdir()) == [
        "cgroup.procs", "not an id", "pool-2"]  # fmt: skip


class Daemon:
    """What the runtime asks of a Docker client at its start: `docker info`."""

    def __init__(self, **info: str) -> None:
        self.answer = info

    def info(self) -> dict[str, str]:
        return self.answer


def docker_runtime(tmp_path: Path, cgroups: str, **info: str) -> DockerRuntime:
    options = DockerOptions(image="freqtrade-pool:latest", network="host",
                            pools_dir=tmp_path / "pools", host_pools_dir=tmp_path / "pools",
                            archive_dir=tmp_path / "archive", cgroups=cgroups,
                            cgroup_view=host(tmp_path / "host", {}))  # fmt: skip
    return DockerRuntime(options, client=Daemon(**info))  # type: ignore[arg-type]


async def test_the_runtime_decides_at_the_controllers_start(tmp_path: Path):
    systemd = {"CgroupVersion": "1", "CgroupDriver": "systemd", "ServerVersion": "24.0.7"}
    runtime = docker_runtime(tmp_path / "a", "v1", **systemd)
    with pytest.raises(CgroupsUnsupported, match="CgroupDriver"):
        await runtime.prepare()
    runtime = docker_runtime(tmp_path / "b", "auto", **systemd)
    await runtime.prepare()
    assert runtime.options.cgroups == "off"
    runtime = docker_runtime(tmp_path / "c", "auto", CgroupVersion="1", CgroupDriver="cgroupfs")
    await runtime.prepare()
    assert runtime.options.cgroups == "v1"


def test_a_hierarchy_with_a_release_agent_gets_no_pool_groups(tmp_path: Path):
    """A pool's root may set notify_on_release in its bound groups: a release_agent on the
    host would then run as root there. auto falls back to off, v1 stops the controller."""
    view = host(tmp_path, {})
    info = {"CgroupVersion": "1", "CgroupDriver": "cgroupfs"}
    (view / "memory" / "release_agent").write_text("\n")  # empty, as on most hosts
    assert decide_mode("auto", info, view) == "v1"
    (view / "memory" / "release_agent").write_text("/usr/local/sbin/cleanup\n")
    assert decide_mode("auto", info, view) == "off"
    with pytest.raises(CgroupsUnsupported, match="memory cgroup hierarchy has a release_agent"):
        decide_mode("v1", info, view)
    assert decide_mode("off", info, view) == "off"
