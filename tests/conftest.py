"""Fixtures shared by the integration and end-to-end suites."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from tests.support import ControllerHarness, kill_pools, make_settings


@pytest.fixture
async def harness_factory(
    tmp_path: Path,
) -> AsyncIterator[Callable[..., ControllerHarness]]:
    """Start real controllers on tmp_path; every pool they made is stopped afterwards."""
    started: list[ControllerHarness] = []

    async def start(**overrides: str) -> ControllerHarness:
        harness = await ControllerHarness(make_settings(tmp_path, **overrides)).start()
        started.append(harness)
        return harness

    try:
        yield start
    finally:
        for harness in started:
            await harness.stop()
        kill_pools(tmp_path)
