"""Per-bot cgroups (agent/cgroups.py): both backends on a directory tree of the test's own
(a real cgroup filesystem is the Docker e2e test's, tests/e2e/docker/test_cgroups.py)."""

from __future__ import annotations

from pathlib import Path

from agent.cgroups import (
    MACHINERY,
    CgroupV1,
    CgroupV2,
    detect,
    oom_kill_count,
    own_paths,
    under_parent,
)
from agent.launcher import join_cgroups, parse
from agent.preloader import valid_cgroups
from agent.programs import ProgramOptions, PythonCommand, render_program

CONTAINER = "02db3dc79ded"
PROC_SELF_CGROUP = f"""\
9:name=systemd:/ftpool/pool-1/{CONTAINER}
8:pids:/ftpool/pool-1/{CONTAINER}
4:memory:/ftpool/pool-1/{CONTAINER}
2:cpuacct:/ftpool/pool-1/{CONTAINER}
1:cpu:/ftpool/pool-1/{CONTAINER}
0::/ftpool/pool-1/{CONTAINER}
"""
V1_FILES = {
    "memory": ["memory.limit_in_bytes", "memory.oom_control"],
    "cpu": ["cpu.shares", "cpu.cfs_period_us", "cpu.cfs_quota_us"],
    "cpuacct": ["cpuacct.usage"],
}


def v1_tree(mount: Path) -> None:
    """What the pool sees at /cgroup: each hierarchy's parent, the container's group in it."""
    for hierarchy in V1_FILES:
        own = mount / hierarchy / CONTAINER
        own.mkdir(parents=True)
        (own / "cgroup.procs").write_text("1\n")


def make_v1_group(group: Path, hierarchy: str) -> None:
    """What the kernel puts in a new group (the test makes them: a plain directory is empty)."""
    for name in ["cgroup.procs", *V1_FILES[hierarchy]]:
        (group / name).write_text("")
    if hierarchy == "memory":
        (group / "memory.oom_control").write_text("oom_kill_disable 0\nunder_oom 0\noom_kill 0\n")


def test_own_paths_and_the_parent():
    own = own_paths(PROC_SELF_CGROUP + "2:cpu,cpuacct:/x/y\n")
    assert own["memory"] == f"/ftpool/pool-1/{CONTAINER}"
    assert own["cpu"] == own["cpuacct"] == "/x/y"  # a combined hierarchy names both
    assert under_parent(own["memory"], "/ftpool/pool-1") == CONTAINER
    assert under_parent(own["memory"], "ftpool/pool-1/") == CONTAINER
    assert under_parent("/ftpool/pool-10/abc", "/ftpool/pool-1") is None  # not a prefix match
    assert under_parent("/", "/ftpool/pool-1") is None  # a private namespace hides it
    assert under_parent("/ftpool/pool-1/../x", "/ftpool/pool-1") is None
    assert under_parent("/ftpool/pool-1", "/ftpool/pool-1") is None


def test_oom_kill_count_of_v1_and_v2():
    assert oom_kill_count("oom_kill_disable 0\nunder_oom 0\noom_kill 3\n") == 3
    assert oom_kill_count("low 0\nhigh 0\nmax 7\noom 2\noom_kill 2\noom_group_kill 0\n") == 2
    assert oom_kill_count("oom_kill_disable 0\nunder_oom 0\n") is None  # an old kernel


def test_v1_finds_the_containers_group_in_each_bound_hierarchy(tmp_path: Path):
    v1_tree(tmp_path)
    groups = CgroupV1.find(tmp_path, "/ftpool/pool-1", PROC_SELF_CGROUP)
    assert groups is not None and groups.mode == "cgroup-v1"
    assert groups.parents == [tmp_path / h / CONTAINER for h in ("memory", "cpu", "cpuacct")]
    assert groups.join_dirs("b1") == [tmp_path / h / CONTAINER / "bot-b1" for h in V1_FILES]
    # Another parent, or no memory hierarchy bound: no cgroups, the agent measures.
    assert CgroupV1.find(tmp_path, "/ftpool/pool-2", PROC_SELF_CGROUP) is None
    (tmp_path / "memory" / CONTAINER / "cgroup.procs").unlink()
    assert CgroupV1.find(tmp_path, "/ftpool/pool-1", PROC_SELF_CGROUP) is None


def test_v1_without_cpuacct_bound_still_limits_memory_and_cpu(tmp_path: Path):
    v1_tree(tmp_path)
    (tmp_path / "cpuacct" / CONTAINER / "cgroup.procs").unlink()
    groups = CgroupV1.find(tmp_path, "/ftpool/pool-1", PROC_SELF_CGROUP)
    assert groups is not None and [p.parent.name for p in groups.parents] == ["memory", "cpu"]


def test_v1_sets_each_limit_in_its_own_hierarchy_and_counts_oom_kills(tmp_path: Path):
    v1_tree(tmp_path)
    groups = CgroupV1.find(tmp_path, "/ftpool/pool-1", PROC_SELF_CGROUP)
    assert groups is not None
    memory, cpu, cpuacct = groups.join_dirs("b1")
    for group, hierarchy in ((memory, "memory"), (cpu, "cpu"), (cpuacct, "cpuacct")):
        group.mkdir()
        make_v1_group(group, hierarchy)
    groups.ensure("b1", 512 << 20, 0.5)
    assert (memory / "memory.limit_in_bytes").read_text() == str(512 << 20)
    assert (cpu / "cpu.shares").read_text() == "1024"
    assert (cpu / "cpu.cfs_period_us").read_text() == "100000"
    assert (cpu / "cpu.cfs_quota_us").read_text() == "50000"
    # Each file only where the hierarchy has it.
    assert not (memory / "cpu.shares").exists() and not (cpu / "memory.limit_in_bytes").exists()
    assert sorted(p.name for p in cpuacct.iterdir()) == ["cgroup.procs", "cpuacct.usage"]
    assert groups.oom_kills("b1") == 0
    (memory / "memory.oom_control").write_text("oom_kill_disable 0\nunder_oom 0\noom_kill 2\n")
    assert groups.oom_kills("b1") == 2
    # No limit: none in the kernel either.
    groups.ensure("b1", 0, 0)
    assert (memory / "memory.limit_in_bytes").read_text() == "-1"
    assert (cpu / "cpu.cfs_quota_us").read_text() == "-1"
    assert groups.oom_kills("gone") is None


def test_v1_a_new_group_is_made(tmp_path: Path):
    v1_tree(tmp_path)
    groups = CgroupV1.find(tmp_path, "/ftpool/pool-1", PROC_SELF_CGROUP)
    assert groups is not None
    groups.ensure("b2", 256 << 20, 0)
    assert all(d.is_dir() for d in groups.join_dirs("b2"))


def test_groups_of_gone_bots_are_removed_busy_ones_kept(tmp_path: Path):
    v1_tree(tmp_path)
    groups = CgroupV1.find(tmp_path, "/ftpool/pool-1", PROC_SELF_CGROUP)
    assert groups is not None
    for bot in ("keep", "gone", "busy"):
        groups.ensure(bot, 0, 0)
    for d in groups.join_dirs("busy"):
        (d / "cgroup.procs").write_text("123")  # a directory that is not empty: EBUSY's like
    assert groups.remove_except({"keep"}) == ["gone"]
    assert all(d.is_dir() for d in groups.join_dirs("keep") + groups.join_dirs("busy"))
    assert not any(d.exists() for d in groups.join_dirs("gone"))


def test_adopt_moves_each_new_pid_once(tmp_path: Path):
    v1_tree(tmp_path)
    groups = CgroupV1.find(tmp_path, "/ftpool/pool-1", PROC_SELF_CGROUP)
    assert groups is not None
    groups.ensure("b1", 0, 0)
    memory = groups.join_dirs("b1")[0]
    (memory / "cgroup.procs").write_text("")
    groups.adopt("b1", 4242)
    assert (memory / "cgroup.procs").read_text() == "4242"
    (memory / "cgroup.procs").write_text("")
    groups.adopt("b1", 4242)  # the same process: not again
    groups.adopt("b1", 0)  # no process
    assert (memory / "cgroup.procs").read_text() == ""
    groups.adopt("b1", 4343)
    assert (memory / "cgroup.procs").read_text() == "4343"


def v2_root(tmp_path: Path, controllers: str = "cpuset cpu io memory pids") -> Path:
    root = tmp_path / "cgroup"
    root.mkdir()
    (root / "cgroup.controllers").write_text(controllers + "\n")
    (root / "cgroup.subtree_control").write_text("")
    return root


def test_v2_moves_the_machinery_to_a_leaf_and_enables_memory_and_cpu(tmp_path: Path):
    root = v2_root(tmp_path)
    (root / "cgroup.procs").write_text("")  # the kernel's file: a write moves, it never lists
    groups = CgroupV2.find(root)
    assert groups is not None and groups.mode == "cgroup-v2" and groups.parents == [root]
    assert (root / MACHINERY).is_dir()
    assert (root / "cgroup.subtree_control").read_text() == "+memory +cpu"
    assert groups.join_dirs("b1") == [root / "bot-b1"]


def test_v2_moves_each_process_of_the_root_a_bounded_number_of_times(tmp_path: Path):
    root = v2_root(tmp_path)
    # A plain file does not empty itself as the kernel's list does: each pid is written to
    # the leaf in turn, and find() gives up after its bounded passes instead of looping.
    (root / "cgroup.procs").write_text("1\n7\n")
    groups = CgroupV2.find(root)
    assert groups is not None
    assert (root / MACHINERY / "cgroup.procs").read_text() == "7"


def test_v2_without_memory_or_cpu_delegated_is_not_used(tmp_path: Path):
    assert CgroupV2.find(v2_root(tmp_path, "cpuset io pids")) is None
    assert CgroupV2.find(tmp_path / "absent") is None


def test_v2_limits_and_oom_kills(tmp_path: Path):
    root = v2_root(tmp_path)
    (root / "cgroup.procs").write_text("")
    groups = CgroupV2.find(root)
    assert groups is not None
    [group] = groups.join_dirs("b1")
    group.mkdir()
    for name in ("memory.max", "memory.oom.group", "cpu.weight", "cpu.max", "cgroup.procs"):
        (group / name).write_text("")
    (group / "memory.events").write_text("low 0\nhigh 0\nmax 0\noom 0\noom_kill 0\n")
    groups.ensure("b1", 300 << 20, 1.5)
    assert (group / "memory.max").read_text() == str(300 << 20)
    assert (group / "memory.oom.group").read_text() == "1"
    assert (group / "cpu.weight").read_text() == "100"
    assert (group / "cpu.max").read_text() == "150000 100000"
    assert groups.oom_kills("b1") == 0
    (group / "memory.events").write_text("low 0\nhigh 0\nmax 4\noom 1\noom_kill 1\n")
    assert groups.oom_kills("b1") == 1
    groups.ensure("b1", 0, 0)
    assert (group / "memory.max").read_text() == "max"
    assert (group / "cpu.max").read_text() == "max 100000"


def test_detect_off_and_unusable():
    assert detect("", "") is None
    # Not under the parent it was told: measured, not a wrong group.
    assert detect("v1", "/ftpool/pool-9", PROC_SELF_CGROUP) is None


def test_the_launcher_joins_its_groups_before_it_drops_its_user(tmp_path: Path):
    options, command = parse(
        ["--socket", "s", "--pidfile", "p", "--cgroups", "/c/memory/x/bot-b1:/c/cpu/x/bot-b1",
         "--", "/py", "bot.py"]
    )  # fmt: skip
    assert options["cgroups"] == "/c/memory/x/bot-b1:/c/cpu/x/bot-b1" and command == [
        "/py",
        "bot.py",
    ]
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    (a / "cgroup.procs").write_text("")
    join_cgroups([str(a), str(b), str(tmp_path / "missing")])  # a missing one is said, no more
    assert (a / "cgroup.procs").read_text() == "0"  # "0": the writing process itself
    assert (b / "cgroup.procs").read_text() == "0"


def test_the_preloader_takes_absolute_groups_only():
    assert valid_cgroups(None) and valid_cgroups([]) and valid_cgroups(["/cgroup/memory/x/bot-b"])
    assert not valid_cgroups("/cgroup/memory")
    assert not valid_cgroups(["cgroup/memory"])
    assert not valid_cgroups(["/cgroup/memory/../../etc"])
    assert not valid_cgroups([1])
    assert not valid_cgroups(["/a"] * 9)


def test_a_preloaded_bots_launcher_names_its_groups(tmp_path: Path):
    opts = ProgramOptions(
        log_dir=tmp_path / "logs", run_dir=tmp_path / "run", launcher_python="/opt/py",
        cgroup_parents=(Path("/cgroup/memory/c1"), Path("/cgroup/cpu/c1")),
    )  # fmt: skip

    preload = PythonCommand("/usr/bin/python3", "/usr/bin/freqtrade", ["trade"])
    conf = render_program("b1", ["freqtrade"], tmp_path / "b1", opts, "ftbot1", preload)
    assert "--cgroups /cgroup/memory/c1/bot-b1:/cgroup/cpu/c1/bot-b1 --" in conf
    plain = ProgramOptions(log_dir=tmp_path / "logs", run_dir=tmp_path / "run")
    assert "--cgroups" not in render_program("b1", ["x"], tmp_path / "b1", plain, "u", preload)


def test_v1_removes_what_earlier_containers_of_the_pool_left(tmp_path: Path):
    v1_tree(tmp_path)
    old = tmp_path / "memory" / "0ld"
    (old / "bot-b1").mkdir(parents=True)
    busy = tmp_path / "memory" / "busy"
    (busy / "bot-b2").mkdir(parents=True)
    (busy / "bot-b2" / "cgroup.procs").write_text("9")  # still a process: kept
    groups = CgroupV1.find(tmp_path, "/ftpool/pool-1", PROC_SELF_CGROUP)
    assert groups is not None
    groups.ensure("mine", 0, 0)
    assert sorted(groups.remove_stale()) == [str(old), str(old / "bot-b1")]
    assert (busy / "bot-b2").is_dir() and (tmp_path / "memory" / CONTAINER / "bot-mine").is_dir()
