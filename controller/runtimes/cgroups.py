"""The Docker host's side of per-bot cgroups (POOL_CGROUPS, docs/limits.md "Per-bot
cgroups"): which mode pools get on this daemon, and each pool's parent group,
`/ftpool/<pool>` in each v1 hierarchy, removed once its container is gone.

`choose_mode` decides from what `docker info` says and what the controller sees of the
host's hierarchies (`probe_view`); `remove_pool_groups` and `stale_pools` act only below
`<view>/<hierarchy>/ftpool/<valid pool id>`, never elsewhere.
"""

from __future__ import annotations

import errno
import re
import time
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog

from common.ids import is_valid_id
from controller.errors import FtpoolError

log = structlog.get_logger("runtime.cgroups")

PARENT = "ftpool"  # each pool's container runs under --cgroup-parent /ftpool/<pool>
V1_HIERARCHIES = ("memory", "cpu", "cpuacct")
V2_DOCKER = 28  # writable-cgroups=true came with Docker 28.0
MODES = ("off", "auto", "v1", "v2")


class CgroupsUnsupported(FtpoolError):
    """POOL_CGROUPS asks for what this Docker daemon cannot give: the controller stops."""


@dataclass(frozen=True, slots=True)
class DaemonCgroups:
    """What `docker info` says of the daemon's cgroups."""

    version: str  # CgroupVersion: "1" or "2"
    driver: str  # CgroupDriver: "cgroupfs", "systemd" (or "none")
    server: str  # ServerVersion, e.g. "20.10.24+dfsg1"

    @classmethod
    def from_info(cls, info: dict[str, Any]) -> DaemonCgroups:
        return cls(
            version=str(info.get("CgroupVersion") or "1"),  # absent before Docker 20.10: v1
            driver=str(info.get("CgroupDriver") or ""),
            server=str(info.get("ServerVersion") or ""),
        )

    @property
    def major(self) -> int:
        found = re.match(r"\d+", self.server)
        return int(found.group()) if found else 0


def why_not(mode: str, daemon: DaemonCgroups, view_problem: str | None) -> str | None:
    """Why pools cannot run in `mode` ("v1" or "v2") on this daemon; None if they can."""
    if daemon.version != mode.removeprefix("v"):
        return f"the Docker daemon's cgroups are v{daemon.version} (docker info: CgroupVersion)"
    if mode == "v1" and daemon.driver != "cgroupfs":
        return (
            f"the Docker daemon's cgroup driver is {daemon.driver or 'unknown'} (docker info: "
            "CgroupDriver); --cgroup-parent /ftpool/<pool> needs cgroupfs (dockerd "
            '--exec-opt native.cgroupdriver=cgroupfs, or "exec-opts": '
            '["native.cgroupdriver=cgroupfs"] in daemon.json)'
        )
    if mode == "v2" and daemon.major < V2_DOCKER:
        return f"writable cgroups need Docker >= {V2_DOCKER}.0, the daemon is {daemon.server}"
    if mode == "v1" and view_problem:
        return view_problem
    return None


def choose_mode(requested: str, daemon: DaemonCgroups, view_problem: str | None) -> tuple[str, str]:
    """(the mode pools get, why `auto` fell back to off or "") for POOL_CGROUPS=`requested`.

    `auto` takes the daemon's own version where it works, else off. An explicit `v1` or
    `v2` the daemon cannot give stops the controller (CgroupsUnsupported), except that the
    controller not seeing the host's groups (`view_problem`) only means they are not
    removed with their pool: pools ran so before."""
    if requested == "off":
        return "off", ""
    if requested == "auto":
        mode = f"v{daemon.version}" if daemon.version in ("1", "2") else "v1"
        problem = why_not(mode, daemon, view_problem)
        return ("off", problem) if problem else (mode, "")
    problem = why_not(requested, daemon, None)
    if problem:
        raise CgroupsUnsupported(
            f"POOL_CGROUPS={requested}: {problem}. Set POOL_CGROUPS=off, or auto (which "
            "falls back to off where cgroups cannot be had)"
        )
    return requested, ""


def probe_view(view: Path) -> str | None:
    """Whether the controller sees the Docker host's v1 hierarchies at `view` and may make
    the pools' parent there (`<view>/<hierarchy>/ftpool`, a cgroup); why not otherwise."""
    for hierarchy in V1_HIERARCHIES:
        top = view / hierarchy / PARENT
        try:
            top.mkdir(exist_ok=True)
        except OSError as exc:
            return (
                f"the controller cannot make {top} ({exc.strerror}): it does not see the "
                "Docker host's cgroup v1 hierarchies there (POOL_CGROUP_VIEW)"
            )
        if not (top / "cgroup.procs").is_file():
            return f"{top} is not a cgroup: POOL_CGROUP_VIEW does not name the host's hierarchies"
    return None


def release_agent_problem(view: Path) -> str | None:
    """Why pools must not get v1 groups of their own on this host: a hierarchy bound into
    them has a `release_agent`, a program the host runs as root when a group whose
    `notify_on_release` is set empties, and a pool's root may set that flag in its bound
    groups. None if no bound hierarchy has one, or the controller cannot see them."""
    for hierarchy in V1_HIERARCHIES:
        try:
            agent = (view / hierarchy / "release_agent").read_text().strip()
        except OSError:
            continue
        if agent:
            return (
                f"the host's {hierarchy} cgroup hierarchy has a release_agent, which a pool's "
                "root could have the host run (notify_on_release in its bound group)"
            )
    return None


def parents(view: Path) -> list[Path]:
    """`/ftpool` in every hierarchy that has one: Docker's cgroupfs driver makes a pool's
    parent in each (blkio, cpuset, devices, freezer, pids, name=systemd, even the cgroup2
    mount beside them), not only in the three bound into the pool."""
    try:
        return sorted(d / PARENT for d in view.iterdir() if (d / PARENT).is_dir())
    except OSError:
        return []


def pool_dirs(view: Path, pool_id: str) -> list[Path]:
    """The pool's parent group in each hierarchy; only a valid pool id names one."""
    if not is_valid_id(pool_id):
        raise ValueError(f"not a pool id: {pool_id!r}")
    return [top / pool_id for top in parents(view)]


def remove_tree(top: Path) -> list[str]:
    """Remove the group `top` and every group below it, deepest first; returns those the
    kernel refused (EBUSY: still holding a process), which stay for the next try."""
    if not top.is_dir() or top.is_symlink():
        return []
    groups = [d for d in top.rglob("*") if d.is_dir() and not d.is_symlink()]
    busy = []
    for group in [*sorted(groups, key=lambda d: -len(d.parts)), top]:
        try:
            group.rmdir()
        except FileNotFoundError:
            continue  # a hierarchy mounted twice (cpu,cpuacct) had it already
        except OSError as exc:
            if exc.errno not in (errno.EBUSY, errno.ENOTEMPTY):
                raise
            busy.append(str(group))
    return busy


def remove_pool_groups(view: Path, pool_id: str) -> list[str]:
    """Remove the pool's `/ftpool/<pool>` groups in every hierarchy that has one; returns
    what is busy."""
    busy = []
    for top in pool_dirs(view, pool_id):
        try:
            busy += remove_tree(top)
        except OSError as exc:
            busy.append(str(top))
            log.warning("pool_cgroup_not_removed", path=str(top), error=exc.strerror)
    return busy


def stale_pools(view: Path, keep: set[str]) -> list[str]:
    """The pools with a group under `/ftpool` in any hierarchy that are not in `keep`; a
    name that is no pool id is not ours and is left alone."""
    found: set[str] = set()
    for top in parents(view):
        found |= {d.name for d in top.iterdir() if d.is_dir() and is_valid_id(d.name)}
    return sorted(found - keep)


def decide_mode(requested: str, info: dict[str, Any], view: Path) -> str:
    """The mode pools get for POOL_CGROUPS=`requested` on the daemon `info` describes
    (`docker info`), logged; raises CgroupsUnsupported for an explicit one it cannot give."""
    daemon = DaemonCgroups.from_info(info)
    problem = None
    if daemon.version == "1" and requested in ("auto", "v1"):
        if unsafe := release_agent_problem(view):
            if requested == "v1":
                raise CgroupsUnsupported(f"POOL_CGROUPS=v1: {unsafe}. Set POOL_CGROUPS=off")
            log.warning("pool_cgroups_off", requested=requested, reason=unsafe)
            return "off"
        problem = probe_view(view)
    mode, reason = choose_mode(requested, daemon, problem)
    if reason:
        log.warning("pool_cgroups_off", requested=requested, reason=reason)
    elif mode == "v1" and problem:
        log.warning("pool_cgroups_not_removable", reason=problem)
    log.info("pool_cgroups", requested=requested, mode=mode, version=daemon.version,
             driver=daemon.driver, docker=daemon.server)  # fmt: skip
    return mode


class PoolGroups:
    """The pools' parent groups on the Docker host as the controller sees them (`view`),
    removed once a pool's container is gone; blocking (file system calls)."""

    def __init__(self, view: Path, tries: int = 10, pause: float = 0.1) -> None:
        self.view = view
        self.tries, self.pause = tries, pause
        self.busy: set[str] = set()  # pools whose groups the kernel found busy last time

    def remove(self, pool_id: str) -> bool:
        """The pool's groups, its container just removed: a group still busy (its last
        processes exiting) is tried again a few times, then left to the next sweep."""
        if not is_valid_id(pool_id):  # names no group of ours: nothing to remove
            log.warning("pool_cgroup_not_a_pool_id", pool=pool_id)
            return False
        for attempt in range(self.tries):
            if attempt:
                time.sleep(self.pause)
            busy = remove_pool_groups(self.view, pool_id)
            if not busy:
                self.busy.discard(pool_id)
                return True
        self.busy.add(pool_id)
        log.warning("pool_cgroup_busy", pool=pool_id, groups=busy)
        return False

    def sweep(self, keep: Collection[str] | None = None) -> list[str]:
        """Remove the groups of every pool not in `keep` (the controller's start), or with
        None of those found busy before (a cleanup); returns the pools whose groups went."""
        pools = set(self.busy) if keep is None else set(stale_pools(self.view, set(keep)))
        gone = []
        for pool_id in sorted(pools):
            busy = remove_pool_groups(self.view, pool_id)
            if busy:
                self.busy.add(pool_id)
                log.warning("pool_cgroup_busy", pool=pool_id, groups=busy)
            else:
                self.busy.discard(pool_id)
                gone.append(pool_id)
        if gone:
            log.info("pool_cgroups_swept", pools=gone)
        return gone
