"""Integration fixtures: controllers shared by a module, and a check that nothing is left running.

Every pool of the local runtime is a supervisord daemon with its agent and bots, all
running with their working directory under the test's base directory. After each test
(and each module-wide controller) no such process may remain.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import pytest
import pytest_asyncio

from tests.support import ControllerHarness, harnesses, processes_under


def assert_nothing_left(base_dir: Path, timeout: float = 15) -> None:
    """Fail (after killing them) if processes of base_dir's pools outlive their pools."""
    deadline = time.monotonic() + timeout
    left = processes_under(base_dir)
    while left and time.monotonic() < deadline:
        time.sleep(0.1)
        left = processes_under(base_dir)
    for pid, _cmd, _cwd in left:
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)
    assert not left, f"processes left behind: {left}"


@pytest.fixture(autouse=True)
def _no_leftover_processes(tmp_path: Path) -> Iterator[None]:
    # Autouse: set up before harness_factory, so this check runs after its teardown.
    yield
    assert_nothing_left(tmp_path)


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def module_harness_factory(
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[Callable[..., Awaitable[ControllerHarness]]]:
    """Like harness_factory, for a controller shared by the tests of one module.

    Tests using it need `pytest.mark.asyncio(loop_scope="module")`.
    """
    base = tmp_path_factory.mktemp("module")
    async with harnesses(base) as start:
        yield start
    assert_nothing_left(base)
