"""Controller test fixtures: a store, and a real app per test over the recording FakeRuntime."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from controller.app import build, create_app
from controller.store.store import Store
from tests.support import make_settings
from tests.unit.controller.apps import Api, ApiFactory, FakeClock, FakeRuntime


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    s = Store(tmp_path / "store.sqlite3")
    await s.open()
    yield s
    await s.close()


@pytest.fixture
async def make_api(tmp_path: Path, aiohttp_client: Callable[..., Any]) -> ApiFactory:
    async def make(**overrides: str) -> Api:
        settings = make_settings(tmp_path, **overrides)
        runtime, clock = FakeRuntime(settings.pools_dir), FakeClock()
        controller = build(settings, runtime=runtime, clock=clock)
        client = await aiohttp_client(create_app(controller))
        return Api(client, controller, runtime, clock)

    return make


@pytest.fixture
async def api(make_api: ApiFactory) -> Api:
    return await make_api()
