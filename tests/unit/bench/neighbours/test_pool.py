"""bench/neighbours/pool.py: a pool's supervisord and everything under it pinned to a core."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

from bench.neighbours.pool import pin_pools, tree


def test_a_pools_whole_process_tree_is_pinned(tmp_path: Path) -> None:
    # A stand-in for supervisord with a child of its own, pinned elsewhere first.
    parent = subprocess.Popen(["sh", "-c", "sleep 30 & wait"])
    deadline = time.monotonic() + 10
    while len(tree(parent.pid)) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    [_, child] = tree(parent.pid)
    try:
        (tmp_path / "pools" / "pool-1").mkdir(parents=True)
        (tmp_path / "pools" / "pool-1" / "supervisord.pid").write_text(str(parent.pid))
        cpu = max(os.sched_getaffinity(0))
        assert pin_pools(tmp_path, cpu) == 2
        assert os.sched_getaffinity(parent.pid) == os.sched_getaffinity(child) == {cpu}
    finally:
        os.kill(child, signal.SIGKILL)
        parent.kill()
        parent.wait()


def test_no_pool_no_pins(tmp_path: Path) -> None:
    assert pin_pools(tmp_path, 0) == 0
