"""Fixtures shared by the integration and end-to-end suites."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from tests.support import ControllerHarness, harnesses


@pytest.fixture
async def harness_factory(
    tmp_path: Path,
) -> AsyncIterator[Callable[..., Awaitable[ControllerHarness]]]:
    """Start real controllers on tmp_path; every pool they made is stopped afterwards.

    To restart a controller on the same data, stop it and start another with the same
    CONTROLLER_PORT (the pools' agents dial that port).
    """
    async with harnesses(tmp_path) as start:
        yield start
