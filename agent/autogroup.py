"""A process's scheduler autogroup: where a thread's nice value stops counting.

With `kernel.sched_autogroup_enabled` (most distributions' default) the kernel puts each
session (setsid) of the root CPU cgroup in a task group of its own, an autogroup, and
shares the CPU between autogroups first, by their own nice value (0 each unless written to
`/proc/<pid>/autogroup`); a thread's nice only orders it within its group. Each forked bot
leads a session of its own (agent/preloader.py), so each bot is its own autogroup: against
its neighbours only its autogroup's nice counts, not its threads' (man 7 sched, "The
autogroup feature"). Measured on this host: two spinners pinned to one core, each its own
session, shared it 50/50 with one of them at nice 19, and about 0/100 once its autogroup
was at 19 as well.

Raising an autogroup's nice needs no capability, nor does lowering it back to 0 (lowering
below 0 needs CAP_SYS_NICE); a writer without CAP_SYS_ADMIN may write one autogroup per
0.1 s on the whole host (EAGAIN otherwise). The file is its process's user's (root writes
any). Where the process is not in the root CPU cgroup (a Docker pool on a cgroup v1 host:
the container's own cgroup) autogroups are not used: a write succeeds and changes nothing,
and the threads' nice values are what counts there.
"""

from __future__ import annotations

import errno
import os
import re
from enum import Enum

ENABLED = "/proc/sys/kernel/sched_autogroup_enabled"
_SHOWN = re.compile(r"/autogroup-\d+ nice (-?\d+)")


class Written(Enum):
    DONE = "done"
    AGAIN = "again"  # the kernel's limit of one write per 0.1 s: try again later
    GONE = "gone"  # the process ended
    REFUSED = "refused"  # not allowed here (permissions, a read-only /proc, no autogroups)


def enabled(path: str = ENABLED) -> bool:
    """Whether the kernel schedules by autogroup (no file: a kernel without them)."""
    try:
        with open(path, "rb") as f:
            return f.read().strip() == b"1"
    except OSError:
        return False


def parse_nice(shown: str) -> int | None:
    """`/autogroup-7529 nice 0` -> 0; None where the process is in no autogroup of its own
    (the kernel shows nothing for the default group)."""
    found = _SHOWN.match(shown.strip())
    return int(found.group(1)) if found else None


def leads_its_session(pid: int) -> bool:
    """Whether the process is its session's leader, so that its autogroup is its own (and
    its children's): the autogroup of a process in the pool's session is the pool's."""
    try:
        return os.getsid(pid) == pid
    except OSError:
        return False


def group_nice(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/autogroup") as f:
            return parse_nice(f.read())
    except OSError:
        return None


def set_group_nice(pid: int, nice: int) -> tuple[Written, int]:
    """Write the autogroup's nice; what came of it, with the errno where it failed."""
    try:
        fd = os.open(f"/proc/{pid}/autogroup", os.O_WRONLY)
    except FileNotFoundError:
        return Written.GONE, errno.ENOENT
    except OSError as exc:
        return Written.REFUSED, exc.errno or 0
    try:
        os.write(fd, str(nice).encode())
    except OSError as exc:
        if exc.errno == errno.EAGAIN:
            return Written.AGAIN, exc.errno
        return (Written.GONE if exc.errno == errno.ESRCH else Written.REFUSED), exc.errno or 0
    finally:
        os.close(fd)
    return Written.DONE, 0
