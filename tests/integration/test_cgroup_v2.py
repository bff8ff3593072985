"""The v2 backend (agent/cgroups.py, `CgroupV2`) on this machine's real cgroup2 hierarchy,
in a group of the test's own below its root (made and removed here; the hierarchy's own
settings, and every process but the test's children, are left alone).

What the kernel does is real: groups made, processes moved through `cgroup.procs` (the
machinery to its leaf, a bot joining its group itself as the launcher does, a bot adopted
by the agent), a group holding a process refused removal (EBUSY) until it exits. The
limits (`memory.max`, `cpu.max`, `memory.events`) need the memory and cpu controllers in
the v2 hierarchy: where the host binds them to v1 hierarchies (this project's CI machine:
/proc/cgroups shows cpu, cpuacct, memory and pids bound to hierarchies 1, 2, 4 and 8, the
cgroup2 mount at /sys/fs/cgroup/unified offers only hugetlb), `find` refuses the group and
the test says so; where they are offered, the limits are checked too.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.cgroups import MACHINERY, CgroupV2
from agent.launcher import join_cgroups

pytestmark = pytest.mark.integration


def cgroup2_mount() -> Path:
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        fields = line.split()
        fstype = fields[fields.index("-") + 1]
        if fstype == "cgroup2":
            return Path(fields[4])
    pytest.fail("this machine mounts no cgroup2 hierarchy (/proc/self/mountinfo)")


def group_of(pid: int) -> str:
    """The process's group in the v2 hierarchy ("0::/path")."""
    lines = Path(f"/proc/{pid}/cgroup").read_text().splitlines()
    return next(line.removeprefix("0::") for line in lines if line.startswith("0::"))


def sleeper(**kwargs) -> subprocess.Popen:
    return subprocess.Popen(["sleep", "300"], **kwargs)


@pytest.fixture
def root() -> Iterator[Path]:
    """A group of the test's own, as a pool's delegated /sys/fs/cgroup; every process in it
    killed and every group below it removed afterwards."""
    if os.geteuid() != 0:
        pytest.fail("making cgroups needs root")
    group = cgroup2_mount() / f"ftpool-test-{os.getpid()}"
    group.mkdir()
    try:
        yield group
    finally:
        dirs = sorted((d for d in group.rglob("*") if d.is_dir()), key=lambda d: -len(d.parts))
        for d in [*dirs, group]:
            for pid in (d / "cgroup.procs").read_text().split():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(int(pid), 9)
        for d in [*dirs, group]:
            for _ in range(50):  # a killed process leaves its group as it is reaped
                try:
                    d.rmdir()
                    break
                except OSError:
                    time.sleep(0.1)


def test_the_v2_backend_on_a_real_cgroup2_group(root: Path):
    base = "/" + str(root.relative_to(cgroup2_mount()))
    machinery = [sleeper(), sleeper()]
    try:
        for p in machinery:  # the pool's processes, in its delegated group
            (root / "cgroup.procs").write_text(str(p.pid))
        assert {group_of(p.pid) for p in machinery} == {base}

        offered = set((root / "cgroup.controllers").read_text().split())
        print("controllers offered to the test's group:", sorted(offered) or "none")
        found = CgroupV2.find(root)
        if not {"memory", "cpu"} <= offered:
            assert found is None  # no limits to give: the agent runs measured
            assert CgroupV2.into_leaf(root)
            groups = CgroupV2([root])
        else:
            assert found is not None
            assert set((root / "cgroup.subtree_control").read_text().split()) >= {"memory", "cpu"}
            groups = found
        # The machinery in its leaf, the delegated group itself empty.
        assert (root / "cgroup.procs").read_text().split() == []
        assert {group_of(p.pid) for p in machinery} == {f"{base}/{MACHINERY}"}

        groups.ensure("a", 64 << 20, 0.5)
        groups.ensure("b", 0, 0)
        assert (root / "bot-a" / "cgroup.procs").is_file()  # the kernel's, a real group
        # A bot joins its group itself before it runs (the launcher's exec_plainly)...
        bot_a = sleeper(preexec_fn=lambda: join_cgroups([str(d) for d in groups.join_dirs("a")]))
        # ... or the agent moves it in when it first sees it (BOT_LAUNCH=exec).
        bot_b = sleeper()
        groups.adopt("b", bot_b.pid)
        assert group_of(bot_a.pid) == f"{base}/bot-a" and group_of(bot_b.pid) == f"{base}/bot-b"

        if found is not None:  # the limits, where the kernel offers them
            assert (root / "bot-a" / "memory.max").read_text().strip() == str(64 << 20)
            assert (root / "bot-a" / "cpu.max").read_text().split() == ["50000", "100000"]
            assert (root / "bot-b" / "memory.max").read_text().strip() == "max"
            assert groups.oom_kills("a") == 0
        else:
            assert not (root / "bot-a" / "memory.max").exists()
            assert groups.oom_kills("a") is None  # no memory.events: nothing reported

        # Both bots gone from the pool, one still running: the kernel refuses its group.
        bot_a.kill()
        bot_a.wait()
        removed = []
        for _ in range(50):  # until the kernel has let the killed bot's group go
            removed = groups.remove_except(set())
            if removed:
                break
            time.sleep(0.1)
        assert removed == ["a"]
        assert (root / "bot-b").is_dir() and group_of(bot_b.pid) == f"{base}/bot-b"
        bot_b.kill()
        bot_b.wait()
        for _ in range(50):
            if groups.remove_except(set()) == ["b"]:
                break
            time.sleep(0.1)
        assert not (root / "bot-b").exists()
    finally:
        for p in machinery:
            p.kill()
            p.wait()
