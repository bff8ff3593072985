"""A local pool's processes: pinned to the measured core, as the benchmarks pin theirs."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path


def children(pid: int) -> list[int]:
    found = []
    with contextlib.suppress(OSError):
        for task in os.listdir(f"/proc/{pid}/task"):
            with contextlib.suppress(OSError, ValueError):
                text = Path(f"/proc/{pid}/task/{task}/children").read_text()
                found += [int(c) for c in text.split()]
    return found


def tree(pid: int) -> list[int]:
    """A process and all its descendants."""
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        todo += children(current)
    return found


def pin_pools(base_dir: Path, cpu: int) -> int:
    """Pin every thread of every pool's supervisord and its descendants (agents, preloaders,
    bots) to `cpu`; what they start from then on inherits it. How many processes."""
    pids = []
    for pidfile in base_dir.glob("pools/*/supervisord.pid"):
        with contextlib.suppress(OSError, ValueError):
            pids += tree(int(pidfile.read_text()))
    for pid in pids:
        with contextlib.suppress(OSError):
            for task in os.listdir(f"/proc/{pid}/task"):
                with contextlib.suppress(OSError):
                    os.sched_setaffinity(int(task), {cpu})
    return len(pids)
