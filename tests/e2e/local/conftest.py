"""The end-to-end suite runs real `freqtrade trade` bots against the exchange emulator.

freqtrade must be installed (the project's [e2e] extra).
"""

from __future__ import annotations

import contextlib
import shutil
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from tests.e2e.trading import MARKET_DATA
from tests.support import ControllerHarness, kill_pools, make_settings

FREQTRADE = shutil.which("freqtrade", path=str(Path(sys.executable).parent)) or shutil.which(
    "freqtrade"
)


class Cluster:
    """One controller (replaceable, to test restarts) over one data directory."""

    def __init__(self, base_dir: Path, overrides: dict[str, str]) -> None:
        self.base_dir = base_dir
        self.overrides = overrides
        self.harness: ControllerHarness | None = None

    async def start(self) -> ControllerHarness:
        self.harness = await ControllerHarness(
            make_settings(self.base_dir, **self.overrides)
        ).start()
        self.overrides["CONTROLLER_PORT"] = str(self.harness.settings.controller_port)
        return self.harness

    async def stop(self) -> None:
        if self.harness is not None:
            await self.harness.stop()

    async def restart(self) -> ControllerHarness:
        await self.stop()
        return await self.start()


@contextlib.asynccontextmanager
async def local_cluster(base: Path, overrides: dict[str, str]) -> AsyncIterator[Cluster]:
    """A started cluster of real freqtrade bots over `base`; its pools killed afterwards."""
    if FREQTRADE is None:
        # Not a skip: the end-to-end suite exists to run real freqtrade.
        pytest.fail("freqtrade is not installed; install the project with its [e2e] extra")
    c = Cluster(base, {
        "BOT_COMMAND": f"{FREQTRADE} trade", "BOT_LAUNCH": "preload",
        "MAX_BOTS_PER_CONTAINER": "10", "POOL_BASE_PORT": "9000", "HEARTBEAT_INTERVAL": "1000",
        "BOT_PING_TIMEOUT": "3000",
        # Pool recovery and evacuation within a test's patience.
        "HEALTH_CHECK_INTERVAL": "2000", "POOL_START_ATTEMPTS": "2",
        "LOG_LEVEL": "warning", **MARKET_DATA, **overrides,
    })  # fmt: skip
    await c.start()
    try:
        yield c
    finally:
        await c.stop()
        kill_pools(base)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def cluster(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Cluster]:
    async with local_cluster(tmp_path_factory.mktemp("e2e"), {}) as c:
        yield c
