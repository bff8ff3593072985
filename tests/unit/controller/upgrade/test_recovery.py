"""A run a dead controller left behind, at the next start: the pool whose new container
was never verified goes back to its old image (its old container confirmed gone first),
a pool never reached is not started, one whose old container is still there is left."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from controller.app import build, create_app
from controller.runtimes import PoolLaunch
from controller.runtimes.base import ImageInfo
from controller.upgrade.plan import NOT_STARTED, PENDING, ROLLED_BACK, STOPPING, VERIFYING
from controller.upgrade.state import PoolUpgrade, UpgradeRun
from tests.support import make_settings
from tests.unit.controller.apps import Api, FakeClock, FakeRuntime

A = ImageInfo("img:a", "sha256:a")
B = ImageInfo("img:b", "sha256:b")
IMAGES = {i.ref: i for i in (A, B)}


class ImageRuntime(FakeRuntime):
    """The fake runtime, whose pools run images: img:a unless a launch names another."""

    has_images = True

    def __init__(self, pools_dir: Path) -> None:
        super().__init__(pools_dir)
        self.images: dict[str, ImageInfo] = {}

    async def create(self, launch: PoolLaunch) -> None:
        await super().create(launch)
        self.images[launch.pool_id] = IMAGES[launch.image or A.ref]

    async def stop(self, pool_id: str) -> None:
        self.calls.append(("stop", pool_id))

    async def image_of(self, pool_id: str) -> ImageInfo | None:
        return self.images.get(pool_id) if pool_id in self.launches else None

    async def resolve_image(self, ref: str = "") -> ImageInfo | None:
        return IMAGES.get(ref or A.ref)


async def test_a_run_cut_short_is_ended_and_its_unverified_pool_rolled_back(
    tmp_path: Path, aiohttp_client: Any
) -> None:
    settings = make_settings(tmp_path, MAX_BOTS_PER_CONTAINER="1")
    runtime = ImageRuntime(settings.pools_dir)
    controller = build(settings, runtime=runtime)
    api = Api(await aiohttp_client(create_app(controller)), controller, runtime, FakeClock())
    for bot in ("b1", "b2", "b3"):
        await api.provision(instanceId=bot)  # pool-1, pool-2, pool-3, each on img:a
    runtime.images["pool-1"] = B  # the dead controller's new container, not yet verified
    run = UpgradeRun("upgrade-1", B.ref, B.id, pools=[
        PoolUpgrade("pool-1", A.ref, A.id, 1, step=VERIFYING),
        PoolUpgrade("pool-2", A.ref, A.id, 1, step=STOPPING),  # its old container is there
        PoolUpgrade("pool-3", A.ref, A.id, 1, step=PENDING),
    ])  # fmt: skip
    await controller.store.save_upgrade(run.id, run.started_at, False, run.dump())
    runtime.calls.clear()

    await controller.upgrader.recover()

    # pool-1: its new container stopped and gone before one of its old image is made.
    assert runtime.calls[:3] == [("stop", "pool-1"), ("discard", "pool-1"), ("inspect", "pool-1")]
    assert ("create", "pool-1") in runtime.calls
    assert runtime.launches["pool-1"].image == A.ref and runtime.images["pool-1"] == A
    assert not any(pool != "pool-1" for call, pool in runtime.calls if call != "watch")
    kept = [UpgradeRun.load(doc) for doc in await controller.store.upgrades()]
    assert [(r.id, r.outcome, r.finished) for r in kept] == [("upgrade-1", "interrupted", True)]
    assert [p.step for p in kept[0].pools] == [ROLLED_BACK, NOT_STARTED, NOT_STARTED]
    assert controller.upgrader.current() is None


class InPlaceRuntime(ImageRuntime):
    """A runtime that starts a stopped pool again on another image in place (swarm: its
    service updated), keeping its token and machine."""

    async def restart_on(self, pool_id: str, image: str) -> bool:
        self.calls.append(("restart_on", pool_id))
        self.images[pool_id] = IMAGES[image]
        return True


async def test_a_pool_updated_in_place_is_rolled_back_in_place(
    tmp_path: Path, aiohttp_client: Any
) -> None:
    """Stopped (its task confirmed gone), then started on its old image where it was: never
    discarded nor made anew (on swarm that could be another node, without its volume)."""
    settings = make_settings(tmp_path, MAX_BOTS_PER_CONTAINER="1")
    runtime = InPlaceRuntime(settings.pools_dir)
    controller = build(settings, runtime=runtime)
    api = Api(await aiohttp_client(create_app(controller)), controller, runtime, FakeClock())
    await api.provision(instanceId="b1")
    token = controller.pools.registry.pools["pool-1"].token_hash
    runtime.images["pool-1"] = B
    run = UpgradeRun("upgrade-1", B.ref, B.id,
                     pools=[PoolUpgrade("pool-1", A.ref, A.id, 1, step=VERIFYING)])  # fmt: skip
    await controller.store.save_upgrade(run.id, run.started_at, False, run.dump())
    runtime.calls.clear()

    await controller.upgrader.recover()

    assert runtime.calls == [("stop", "pool-1"), ("restart_on", "pool-1")]
    assert runtime.images["pool-1"] == A
    assert controller.pools.registry.pools["pool-1"].token_hash == token
    [kept] = [UpgradeRun.load(doc) for doc in await controller.store.upgrades()]
    assert [p.step for p in kept.pools] == [ROLLED_BACK]
