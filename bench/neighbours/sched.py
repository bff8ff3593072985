"""What a busy loop's scheduling does to its neighbours' wake-up latency, on one core, all in
one session (one autogroup: what a Docker pool's bots are, where only their threads'
priorities count against each other).

    .venv/bin/python -m bench.neighbours.sched [--seconds 5] [--repeats 2] [--cpu 1]

Three neighbours each sleep 10 ms then work 1 ms (a bot answering a request), pinned to
`--cpu` with one spinner, which runs at nice 0 (`off`), at nice 19 (`nice`), or at nice 19
under SCHED_IDLE (`idle`: BOT_BUSY_POLICY's default); `none` has no spinner. Printed per
case: the neighbours' wake-up delay past their 10 ms (p50, p99, max, ms) and the spinner's
share of the core. The cases run in turn, `--repeats` times, so that the run-to-run noise
of a shared machine shows.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import time

from bench.tools import percentile

CASES = ("none", "off", "nice", "idle")


def spinner(cpu: int, case: str) -> None:
    os.sched_setaffinity(0, {cpu})
    if case in ("nice", "idle"):
        os.setpriority(os.PRIO_PROCESS, 0, 19)
    if case == "idle":
        os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
    while True:
        pass


def neighbour(cpu: int, seconds: float, out: mp.Queue) -> None:
    os.sched_setaffinity(0, {cpu})
    delays = []
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        due = time.monotonic() + 0.010
        time.sleep(0.010)
        delays.append(time.monotonic() - due)
        work_until = time.thread_time() + 0.001
        while time.thread_time() < work_until:
            pass
    out.put(delays)


def one(cpu: int, case: str, seconds: float) -> tuple[list[float], float]:
    ctx = mp.get_context("fork")
    spin = ctx.Process(target=spinner, args=(cpu, case), daemon=True) if case != "none" else None
    if spin is not None:
        spin.start()
        time.sleep(0.2)
        ran = _cpu(spin.pid)
    out: mp.Queue = ctx.Queue()
    started = time.monotonic()
    workers = [ctx.Process(target=neighbour, args=(cpu, seconds, out)) for _ in range(3)]
    for w in workers:
        w.start()
    delays = [d for _ in workers for d in out.get()]
    for w in workers:
        w.join()
    share = 0.0
    if spin is not None:
        share = (_cpu(spin.pid) - ran) / (time.monotonic() - started)
        spin.kill()
        spin.join()
    return delays, share


def _cpu(pid: int) -> float:
    with open(f"/proc/{pid}/stat", "rb") as f:
        fields = f.read().rsplit(b")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=5)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--cpu", type=int, default=1)
    args = parser.parse_args()
    print(f"{'case':<6}{'p50 ms':>8}{'p99 ms':>8}{'max ms':>8}{'spinner':>9}")
    for _ in range(args.repeats):
        for case in CASES:
            delays, share = one(args.cpu, case, args.seconds)
            ms = [1000 * d for d in delays]
            print(f"{case:<6}{percentile(ms, 50):8.2f}{percentile(ms, 99):8.2f}"
                  f"{max(ms):8.2f}{100 * share:8.0f}%", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
