"""Each bot in a cgroup of its own under the pool container's: its memory and CPU limited
by the kernel, its OOM kills counted (docs/limits.md, "Per-bot cgroups").

Two backends with one interface:

- `CgroupV1` (a cgroup v1 host): the controller runs the pool with
  `--cgroup-parent=/ftpool/<pool>` and binds that parent's directory of each hierarchy it
  uses (memory, cpu, cpuacct) read-write at /cgroup/<hierarchy>. The container's own group
  is the parent's child named in /proc/self/cgroup; each bot's group is made under it, so
  v1's hierarchical accounting keeps the container's limit over all its bots.
- `CgroupV2` (a cgroup v2 host, Docker >= 28 with `--cgroupns=private` and
  `--security-opt writable-cgroups=true`): /sys/fs/cgroup is the container's own group.
  A v2 group with children may hold no process, so the pool's machinery moves to a leaf
  of its own first (`MACHINERY`), then the memory and cpu controllers are enabled for
  the children.

A bot's process joins its group itself, as root, before it drops to its user (the
preloader's `run_bot`, the launcher's `exec_plainly`): it writes "0" to `cgroup.procs` of
each of its group's directories (`join_dirs`). A bot started otherwise (BOT_LAUNCH=exec) is
moved in by the agent when it first sees its pid (`adopt`).

Only the filesystem: the directories are arguments, so the tests run both backends on a
directory tree of their own.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import structlog

log = structlog.get_logger("agent.cgroups")

V1_MOUNT = Path("/cgroup")  # where the controller binds the pool's parent of each hierarchy
V2_MOUNT = Path("/sys/fs/cgroup")
V1_HIERARCHIES = ("memory", "cpu", "cpuacct")
MACHINERY = "ftpool-machinery"  # v2: the leaf that supervisord, the agent and the rest move to
CPU_PERIOD_US = 100_000
MODES = ("cgroup-v1", "cgroup-v2")


def group_name(bot_id: str) -> str:
    return f"bot-{bot_id}"


def own_paths(proc_self_cgroup: str) -> dict[str, str]:
    """Each v1 hierarchy's controller -> this process's group in it, from /proc/self/cgroup
    ("4:memory:/ftpool/pool-1/<id>"; "2:cpu,cpuacct:/..." names both)."""
    paths: dict[str, str] = {}
    for line in proc_self_cgroup.splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3 or not parts[1]:
            continue
        for controller in parts[1].split(","):
            paths[controller] = parts[2]
    return paths


def under_parent(path: str, parent: str) -> str | None:
    """The container's group relative to the bound parent ("<id>"), or None when it is not
    under it (a mistaken parent, or a private cgroup namespace that hides it)."""
    parent = "/" + parent.strip("/")
    if not path.startswith(parent + "/"):
        return None
    rest = path[len(parent) + 1 :].strip("/")
    return rest if rest and ".." not in rest.split("/") else None


def oom_kill_count(text: str) -> int | None:
    """`oom_kill N` of v1's memory.oom_control or v2's memory.events."""
    for line in text.splitlines():
        key, _, value = line.partition(" ")
        if key == "oom_kill" and value.strip().isdigit():
            return int(value)
    return None


def write(path: Path, value: str) -> bool:
    try:
        path.write_text(value)
        return True
    except OSError as exc:
        log.warning("cgroup_write_failed", path=str(path), error=exc.strerror or str(exc))
        return False


def read(path: Path) -> str | None:
    try:
        return path.read_text()
    except OSError:
        return None


class BotGroups:
    """What both backends share: a group per bot under each of `parents`."""

    mode = ""

    def __init__(self, parents: list[Path]) -> None:
        self.parents = parents
        self._adopted: dict[str, int] = {}  # bot -> the pid moved into its group last

    def join_dirs(self, bot_id: str) -> list[Path]:
        """The directories whose cgroup.procs a bot's process writes itself into."""
        return [p / group_name(bot_id) for p in self.parents]

    def limits(self, memory: int, cpu: float) -> dict[str, str]:
        raise NotImplementedError

    def ensure(self, bot_id: str, memory: int, cpu: float) -> None:
        """Make the bot's group (where missing) and set its limits (0: none) where its
        directory has the file (a v1 hierarchy has only its own)."""
        for group in self.join_dirs(bot_id):
            try:
                group.mkdir(mode=0o700, exist_ok=True)
            except OSError as exc:
                log.warning("cgroup_mkdir_failed", path=str(group), error=exc.strerror)
                continue
            for name, value in self.limits(memory, cpu).items():
                path = group / name
                if path.exists() and (read(path) or "").strip() != value:
                    write(path, value)

    def remove_except(self, keep: set[str]) -> list[str]:
        """Remove the groups of bots no longer in the pool; a group that still holds a
        process stays until the next time (the kernel refuses: EBUSY)."""
        removed = set()
        for parent in self.parents:
            for group in parent.glob(group_name("*")):
                bot_id = group.name.removeprefix(group_name(""))
                if bot_id in keep or not group.is_dir():
                    continue
                with contextlib.suppress(OSError):
                    group.rmdir()
                    removed.add(bot_id)
                    self._adopted.pop(bot_id, None)
        return sorted(removed)

    def adopt(self, bot_id: str, pid: int) -> None:
        """Move a bot's process into its group (once per pid): for a bot that did not join
        itself (started by exec, or before its group existed). Moving a process already
        there changes nothing."""
        if pid <= 0 or self._adopted.get(bot_id) == pid:
            return
        self._adopted[bot_id] = pid
        for group in self.join_dirs(bot_id):
            if (group / "cgroup.procs").exists():
                write(group / "cgroup.procs", str(pid))

    def oom_kills(self, bot_id: str) -> int | None:
        raise NotImplementedError


class CgroupV1(BotGroups):
    mode = "cgroup-v1"

    def limits(self, memory: int, cpu: float) -> dict[str, str]:
        return {
            "memory.limit_in_bytes": str(memory) if memory > 0 else "-1",
            "cpu.shares": "1024",
            "cpu.cfs_period_us": str(CPU_PERIOD_US),
            "cpu.cfs_quota_us": str(round(cpu * CPU_PERIOD_US)) if cpu > 0 else "-1",
        }

    def oom_kills(self, bot_id: str) -> int | None:
        for group in self.join_dirs(bot_id):
            text = read(group / "memory.oom_control")
            if text is not None:
                return oom_kill_count(text)
        return None

    def remove_stale(self) -> list[str]:
        """The groups that earlier containers of this pool left under the parent (a
        container's group holding bot groups outlives it): each empty one is removed."""
        removed = []
        for own in self.parents:
            for old in own.parent.iterdir():
                if old == own or not old.is_dir():
                    continue
                for group in [*old.glob(group_name("*")), old]:
                    with contextlib.suppress(OSError):
                        group.rmdir()
                        removed.append(str(group))
        return removed

    @classmethod
    def find(cls, mount: Path, parent: str, proc_self_cgroup: str) -> CgroupV1 | None:
        """The container's own group in each hierarchy bound under `mount`; None when the
        memory hierarchy is not bound or the container is not under `parent`."""
        own = own_paths(proc_self_cgroup)
        parents = []
        for hierarchy in V1_HIERARCHIES:
            bound = mount / hierarchy
            relative = under_parent(own.get(hierarchy, ""), parent)
            if relative is not None and (bound / relative / "cgroup.procs").exists():
                parents.append(bound / relative)
            elif hierarchy == "memory":
                return None
        return cls(parents)


class CgroupV2(BotGroups):
    mode = "cgroup-v2"

    def limits(self, memory: int, cpu: float) -> dict[str, str]:
        quota = str(round(cpu * CPU_PERIOD_US)) if cpu > 0 else "max"
        return {
            "memory.max": str(memory) if memory > 0 else "max",
            "memory.oom.group": "1",  # an OOM kill takes the whole bot, never half of it
            "cpu.weight": "100",
            "cpu.max": f"{quota} {CPU_PERIOD_US}",
        }

    def oom_kills(self, bot_id: str) -> int | None:
        [group] = self.join_dirs(bot_id)
        text = read(group / "memory.events")
        return None if text is None else oom_kill_count(text)

    @classmethod
    def find(cls, root: Path) -> CgroupV2 | None:
        """The container's delegated group at `root` (its cgroup namespace's root), made
        ready for children: the machinery moved to a leaf of its own, memory and cpu
        enabled for the bots' groups. None when it is not writable or lacks them."""
        controllers = (read(root / "cgroup.controllers") or "").split()
        if not {"memory", "cpu"} <= set(controllers) or not os.access(root, os.W_OK):
            return None
        if not cls.into_leaf(root):
            return None
        if not write(root / "cgroup.subtree_control", "+memory +cpu"):
            return None
        return cls([root])

    @staticmethod
    def into_leaf(root: Path) -> bool:
        """Every process in `root` moved to its leaf `MACHINERY` (made where missing): a v2
        group with controllers enabled for its children may hold none itself."""
        leaf = root / MACHINERY
        try:
            leaf.mkdir(mode=0o700, exist_ok=True)
        except OSError:
            return False
        for _ in range(10):  # processes forked meanwhile land in the root: move them too
            pids = (read(root / "cgroup.procs") or "").split()
            if not pids:
                break
            for pid in pids:
                with contextlib.suppress(OSError):  # gone meanwhile
                    (leaf / "cgroup.procs").write_text(pid)
        return True


def detect(mode: str, parent: str, proc_self_cgroup: str | None = None) -> BotGroups | None:
    """The pool's backend for POOL_CGROUP (`v1`, `v2`, or empty: none) and
    POOL_CGROUP_PARENT; None, and the agent's measurement alone, when it is not usable."""
    if mode == "v1":
        text = proc_self_cgroup if proc_self_cgroup is not None else read(Path("/proc/self/cgroup"))
        found: BotGroups | None = CgroupV1.find(V1_MOUNT, parent, text or "")
    elif mode == "v2":
        found = CgroupV2.find(V2_MOUNT)
    else:
        return None
    if isinstance(found, CgroupV1):
        # The bound directories are the machinery's: bots (other users) never look in.
        with contextlib.suppress(OSError):
            os.chmod(V1_MOUNT, 0o700)
        if stale := found.remove_stale():
            log.info("cgroups_stale_removed", groups=stale)
    if found is None:
        log.warning("cgroup_unusable", mode=mode, parent=parent)
    else:
        log.info("cgroup_found", mode=found.mode, groups=[str(p) for p in found.parents])
    return found
