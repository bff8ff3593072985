"""What the benchmarks share: CPU pinning, a process's CPU time, percentiles, loopback ports.

The machine has two cores. Each benchmark pins the side it measures to core 0 and its
load generators to core 1, so the load does not steal the measured side's core, and
measures the measured process's own CPU time from /proc to turn rates into per-core
figures.
"""

from __future__ import annotations

import math
import os
import time

# Benchmarks listen only here: other suites on this machine use other ranges.
PORTS = range(40000, 42000)
MEASURED_CPU = 0
LOAD_CPU = 1
_TICKS = os.sysconf("SC_CLK_TCK")


def pin(cpu: int) -> None:
    """Run this process on one core (no-op on a machine with a single core)."""
    if os.cpu_count() and os.cpu_count() > cpu:  # type: ignore[operator]
        os.sched_setaffinity(0, {cpu})


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of a process, all its threads, from /proc/<pid>/stat."""
    with open(f"/proc/{pid}/stat", "rb") as f:
        stat = f.read()
    # The command name may hold spaces; the fields after it are space-separated.
    fields = stat[stat.rfind(b")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / _TICKS


def rss_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (0..100) by nearest rank; values need not be sorted."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    rank = max(1, min(len(ordered), math.ceil(q / 100 * len(ordered))))
    return ordered[rank - 1]


class GcPauses:
    """Records every garbage collection of this process: when it ended, its generation, how
    long it stopped the interpreter and how much of that was CPU time of this thread (the
    rest: the process was not running, e.g. another process had the core). Install with
    `gc.callbacks.append(pauses)`."""

    def __init__(self) -> None:
        self._started = (0.0, 0.0)
        self.ended_at: list[float] = []
        self.generation: list[int] = []
        self.seconds: list[float] = []
        self.cpu_seconds: list[float] = []

    def __call__(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._started = (time.perf_counter(), time.thread_time())
            return
        self.seconds.append(time.perf_counter() - self._started[0])
        self.cpu_seconds.append(time.thread_time() - self._started[1])
        self.ended_at.append(time.time())
        self.generation.append(info["generation"])

    def rows(self) -> list[tuple[float, int, float, float]]:
        return list(
            zip(self.ended_at, self.generation, self.seconds, self.cpu_seconds, strict=True)
        )
