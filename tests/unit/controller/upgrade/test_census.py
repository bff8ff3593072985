"""The image census behind /api/pool/status and /api/pool/upgrade: dashboards polling
them cost one census per FRESH seconds, and a pool's runtime made or removed by the
controller is seen at the next call."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from controller.app import build, create_app
from controller.runtimes.base import ImageInfo
from controller.upgrade.census import FRESH
from tests.support import make_settings
from tests.unit.controller.apps import Api, FakeClock
from tests.unit.controller.upgrade.test_recovery import A, B, ImageRuntime


class CountingRuntime(ImageRuntime):
    """Counts what the census asks: one image_of per pool per census."""

    def __init__(self, pools_dir: Path) -> None:
        super().__init__(pools_dir)
        self.asked: list[str] = []

    async def image_of(self, pool_id: str) -> ImageInfo | None:
        self.asked.append(pool_id)
        return await super().image_of(pool_id)


async def make(tmp_path: Path, aiohttp_client: Any) -> tuple[Api, CountingRuntime, FakeClock]:
    settings = make_settings(tmp_path, MAX_BOTS_PER_CONTAINER="1")
    runtime, clock = CountingRuntime(settings.pools_dir), FakeClock()
    controller = build(settings, runtime=runtime)
    controller.census.clock = clock
    api = Api(await aiohttp_client(create_app(controller)), controller, runtime, clock)
    return api, runtime, clock


async def images(api: Api) -> dict[str, str]:
    status, body, _ = await api.call("GET", "/api/pool/status")
    assert status == 200, body
    return {p["id"]: p["image"]["ref"] for p in body["pools"]}


async def test_polling_costs_one_census_per_fresh_seconds(tmp_path: Path, aiohttp_client: Any):
    api, runtime, clock = await make(tmp_path, aiohttp_client)
    await api.provision(instanceId="b1")
    assert await images(api) == {"pool-1": A.ref}
    for _ in range(5):
        assert (await api.call("GET", "/api/pool/upgrade"))[0] == 200
        assert await images(api) == {"pool-1": A.ref}
    assert runtime.asked == ["pool-1"]
    # A change outside the controller (the container's image replaced by hand) shows once
    # the census is FRESH seconds old.
    runtime.images["pool-1"] = B
    clock.advance(FRESH - 0.5)
    assert await images(api) == {"pool-1": A.ref}
    clock.advance(0.5)
    assert await images(api) == {"pool-1": B.ref}
    _, body, _ = await api.call("GET", "/api/pool/upgrade")
    assert body["outdatedPools"] == ["pool-1"]
    assert runtime.asked == ["pool-1", "pool-1"]


async def test_a_runtime_the_controller_makes_or_removes_is_seen_at_once(
    tmp_path: Path, aiohttp_client: Any
):
    api, runtime, _clock = await make(tmp_path, aiohttp_client)
    await api.provision(instanceId="b1")
    assert await images(api) == {"pool-1": A.ref}
    await api.provision(instanceId="b2")  # a second pool, no time passed
    assert await images(api) == {"pool-1": A.ref, "pool-2": A.ref}
    # An upgrade's replacement: the pool's runtime made anew, of another image.
    pool = api.controller.pools.registry.pools["pool-1"]
    await runtime.discard("pool-1")
    await api.controller.pools.lifecycle.recreate(pool, B.ref)
    assert await images(api) == {"pool-1": B.ref, "pool-2": A.ref}
    _, body, _ = await api.call("GET", "/api/pool/upgrade")
    assert body["outdatedPools"] == ["pool-1"]
    assert runtime.asked.count("pool-1") == 3  # a census per change, none in between
