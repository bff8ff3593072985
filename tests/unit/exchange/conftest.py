"""Fixtures for the exchange emulator's tests: its app on a test client, with a fixed clock."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import pytest
from aiohttp.test_utils import TestClient

from tests.exchange import Settings, State, build_app

NOW_MS = 1_795_000_000_123  # a fixed "now" (2026-11-18), 123 ms into a second
SMALL = 300  # markets in the HTTP tests (the ccxt test serves the full 2,000)


class Clock:
    def __init__(self, ms: int = NOW_MS) -> None:
        self.ms = ms

    def __call__(self) -> int:
        return self.ms


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def make_client(aiohttp_client, clock: Clock) -> Callable[..., Awaitable[tuple[TestClient, State]]]:
    """A test client on a fresh emulator app (Settings overridable), and its State."""

    async def make(**overrides: object) -> tuple[TestClient, State]:
        state = State(Settings(**{"markets": SMALL, **overrides}), clock=clock)
        return await aiohttp_client(build_app(state)), state

    return make
