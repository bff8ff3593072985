"""Rolling upgrades end to end: real pool containers of real trading bots move to another
image and back.

Image A is freqtrade-pool:latest; B is built FROM it with a label and a file, so a pool on
B is told apart; a broken image is built FROM it with a FreqTrade that raises on import,
so its bots cannot start. Four trading bots in two pools. Runs in order on one cluster:
the pools show their image, a dry run changes nothing, every pool moves to B with each
bot answering and every trade row kept (with a canary and a soak), a canary on the
broken image fails and its pool is rolled back to B with its data while the other pool is
never touched, a controller killed (-9) mid-upgrade rolls the pool back at its next
start, and a pool upgraded by `move` has its bots moved one at a time into a fresh pool
on the new image, never two copies of one, and is gone.
"""

from __future__ import annotations

import asyncio
import io

import docker
import pytest
import pytest_asyncio

from tests.e2e.docker.conftest import POOL_IMAGE, cluster_in_docker
from tests.e2e.docker.test_docker import container_bot_processes
from tests.e2e.local.test_freqtrade import ALICE, all_running, assert_bots_answer
from tests.e2e.trading import assert_trades_kept, now, trades, wait_trading
from tests.exchange import trading_bot
from tests.support import ControllerProcess, settings_env, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="module")]
IMAGE_B = "freqtrade-pool:test-b"
BROKEN = "freqtrade-pool:test-broken"
BOTS = [f"alice-up-{i}" for i in range(1, 5)]
POOLS = ["pool-1", "pool-2"]
DOCKERFILES = {
    IMAGE_B: f"FROM {POOL_IMAGE}\nLABEL ftpool.test-image=b\nRUN echo b > /etc/ftpool-test-image\n",
    # FreqTrade raises on import: neither the preloader nor a bot can start.
    BROKEN: f"FROM {POOL_IMAGE}\nLABEL ftpool.test-image=broken\n"
    "RUN f=$(python3 -c 'import freqtrade; print(freqtrade.__file__)') "
    '&& echo \'raise SystemExit("ftpool test: a broken image")\' >> "$f"\n',
}


@pytest.fixture(scope="module")
def images(docker_client: docker.DockerClient) -> dict[str, str]:
    """The test images, built from the pool image under test; their ids."""
    built = {}
    for tag, dockerfile in DOCKERFILES.items():
        image, _logs = docker_client.images.build(
            fileobj=io.BytesIO(dockerfile.encode()), tag=tag, rm=True, forcerm=True
        )
        built[tag] = image.id
    built[POOL_IMAGE] = docker_client.images.get(POOL_IMAGE).id
    return built


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def cluster(tmp_path_factory, docker_client, images):
    async with cluster_in_docker(
        tmp_path_factory, docker_client, MAX_BOTS_PER_CONTAINER="2", POOL_BASE_PORT="29600",
        MARKET_DATA_BASE_PORT="29500",
    ) as c:  # fmt: skip
        yield c


def container(client: docker.DockerClient, pool_id: str):
    return client.containers.get(f"freqtrade-pool-{pool_id}")


async def assert_fleet_intact(cluster, before: dict, event: float, timeout: float = 180) -> None:
    """Every bot running and answering, one copy of each, every trade it had still there."""
    await all_running(cluster, BOTS, timeout=timeout)
    await assert_bots_answer(cluster.harness, BOTS)
    assert {b: len(p) for b, p in container_bot_processes().items()} == {b: 1 for b in BOTS}
    after = await all_trades(cluster)
    for bot in BOTS:
        assert_trades_kept(before[bot], after[bot], event)


async def pool_status(cluster) -> dict:
    status, body = await cluster.harness.call("GET", "/api/pool/status")
    assert status == 200, body
    return body


async def upgrade(cluster, **body) -> dict:
    """Start a run and wait for its end; its record."""
    status, started = await cluster.harness.call("POST", "/api/pool/upgrade", json=body)
    assert status == 202, started
    run_id = started["run"]["id"]

    async def finished():
        status, body = await cluster.harness.call("GET", "/api/pool/upgrade")
        assert status == 200, body
        run = next(r for r in body["runs"] if r["id"] == run_id)
        return run if run["finished_at"] else None

    run = await wait_for(finished, 900, step=1)
    for pool in run["pools"]:  # the measured figures, for the report
        print(f"{run['to_ref']} {pool['pool']}: {pool['step']}, down {pool['downtime_s']} s, "
              f"per bot {pool['bot_downtime_s']}")  # fmt: skip
    return run


async def upgrade_counting(cluster, **body: object) -> tuple[dict, dict[str, int]]:
    """An upgrade run to its end, and the most copies of each bot seen running at once
    (every 0.1 s, every container on the daemon) throughout it."""
    copies: dict[str, int] = {}
    done = asyncio.Event()

    async def count() -> None:
        while not done.is_set():
            for bot, pids in (await asyncio.to_thread(container_bot_processes)).items():
                copies[bot] = max(copies.get(bot, 0), len(pids))
            await asyncio.sleep(0.1)

    counter = asyncio.create_task(count())
    try:
        run = await upgrade(cluster, **body)
    finally:
        done.set()
        await counter
    return run, copies


async def all_trades(cluster) -> dict[str, dict]:
    return {bot: await trades(cluster.harness, ALICE, bot) for bot in BOTS}


async def test_pools_show_the_image_they_run(cluster, docker_client, exchange, images):
    h = cluster.harness
    placed = [await h.provision(ALICE, **trading_bot(exchange.url, bot)) for bot in BOTS]
    assert [p["poolId"] for p in placed] == ["pool-1", "pool-1", "pool-2", "pool-2"]
    await all_running(cluster, BOTS, timeout=240)
    await wait_trading(h, ALICE, BOTS)
    status = await pool_status(cluster)
    assert status["poolImage"] == {"ref": POOL_IMAGE, "id": images[POOL_IMAGE]}
    assert status["outdatedPools"] == []
    for pool in status["pools"]:
        image = pool["image"]
        assert (image["ref"], image["id"], image["current"]) == (
            POOL_IMAGE, images[POOL_IMAGE], True,
        )  # fmt: skip
        assert image["freqtrade"] and image["freqtrade"][0].isdigit()
    bots = await h.bots(ALICE)
    assert {b["freqtrade"] for b in bots.values()} == {status["pools"][0]["image"]["freqtrade"]}
    status, metrics = await h.call("GET", "/metrics")
    assert "ftpool_pools_outdated_image 0.0" in metrics.decode()


async def test_a_dry_run_shows_the_plan_and_changes_nothing(cluster, docker_client, images):
    ids = {p: container(docker_client, p).id for p in POOLS}
    status, plan = await cluster.harness.call(
        "POST", "/api/pool/upgrade", json={"image": IMAGE_B, "dryRun": True, "canary": 1}
    )
    assert status == 200, plan
    assert plan["image"] == {"ref": IMAGE_B, "id": images[IMAGE_B]}
    assert [(p["poolId"], p["bots"], p["canary"]) for p in plan["pools"]] == [
        ("pool-1", 2, True), ("pool-2", 2, False),
    ]  # fmt: skip
    assert {p: container(docker_client, p).id for p in POOLS} == ids
    status, refused = await cluster.harness.call(
        "POST", "/api/pool/upgrade", json={"image": "no-such-image:never"}
    )
    assert status == 404, refused


async def test_every_pool_moves_to_b_with_its_bots_and_their_trades(cluster, docker_client, images):
    h = cluster.harness
    old = {p: container(docker_client, p).id for p in POOLS}
    event, before = now(), await all_trades(cluster)
    run = await upgrade(cluster, image=IMAGE_B, canary=1, soak=5, method="recreate")
    assert run["outcome"] == "upgraded", run
    assert [(p["pool"], p["step"], p["canary"]) for p in run["pools"]] == [
        ("pool-1", "upgraded", True), ("pool-2", "upgraded", False),
    ]  # fmt: skip
    for pool in POOLS:
        new = container(docker_client, pool)
        assert new.id != old[pool] and new.image.id == images[IMAGE_B]
        assert new.labels["ftpool.test-image"] == "b"
        code, out = new.exec_run(["cat", "/etc/ftpool-test-image"])
        assert (code, out.strip()) == (0, b"b")
    await assert_fleet_intact(cluster, before, event)
    # POOL_IMAGE still names A: both pools now run another image.
    status = await pool_status(cluster)
    assert status["outdatedPools"] == POOLS
    assert [p["image"]["ref"] for p in status["pools"]] == [IMAGE_B, IMAGE_B]
    _, metrics = await h.call("GET", "/metrics")
    assert "ftpool_pools_outdated_image 2.0" in metrics.decode()


async def test_a_failing_canary_is_rolled_back_with_its_data_and_stops_the_run(
    cluster, docker_client, images
):
    untouched = container(docker_client, "pool-2").id
    event, before = now(), await all_trades(cluster)
    run = await upgrade(cluster, image=BROKEN, canary=1, soak=5, timeout=60, method="recreate")
    assert run["outcome"] == "canary_failed", run
    first, second = run["pools"]
    assert (first["pool"], first["step"]) == ("pool-1", "rolled_back")
    assert "did not answer" in first["reason"] or "did not connect" in first["reason"]
    assert (second["pool"], second["step"]) == ("pool-2", "not_started")
    assert container(docker_client, "pool-1").image.id == images[IMAGE_B]
    assert container(docker_client, "pool-2").id == untouched
    await assert_fleet_intact(cluster, before, event)


async def test_a_controller_killed_mid_upgrade_rolls_the_pool_back_at_its_next_start(
    cluster, docker_client, images
):
    event, before = now(), await all_trades(cluster)
    # The same controller (settings, store, pools) as a child process, to be killed -9.
    await cluster.stop()
    doomed = ControllerProcess(settings_env(cluster.base_dir, **cluster.overrides))
    try:
        await doomed.start()
        status, started = await doomed.call(
            "POST",
            "/api/pool/upgrade",
            json={"image": POOL_IMAGE, "pools": ["pool-2"], "method": "recreate"},
        )
        assert status == 202, started

        async def verifying():
            _, body = await doomed.call("GET", "/api/pool/upgrade")
            return body["current"] and body["current"]["pools"][0]["step"] == "verifying"

        await wait_for(verifying, 300, step=0.1)
        # Killed now: the new container runs, its bots not yet verified.
        await doomed.kill()
    finally:
        await doomed.close()
    assert container(docker_client, "pool-2").image.id == images[POOL_IMAGE]
    h = await cluster.start()
    _, body = await h.call("GET", "/api/pool/upgrade")
    run = body["runs"][-1]
    assert run["id"] == started["run"]["id"] and run["outcome"] == "interrupted", run
    assert run["pools"][0]["step"] == "rolled_back", run
    assert container(docker_client, "pool-2").image.id == images[IMAGE_B]
    await assert_fleet_intact(cluster, before, event, timeout=240)


async def test_a_pool_upgraded_by_move_moves_its_bots_into_a_fresh_pool(
    cluster, docker_client, images
):
    h = cluster.harness
    moving = BOTS[:2]  # pool-1's; the fresh pool is pool-3 (the lowest free number)
    # To the image it does not run (B after the tests above; A when run alone with the first).
    on_a = container(docker_client, "pool-1").image.id == images[POOL_IMAGE]
    target = IMAGE_B if on_a else POOL_IMAGE
    event, before = now(), await all_trades(cluster)
    run, copies = await upgrade_counting(cluster, image=target, pools=["pool-1"], method="move")
    assert run["outcome"] == "upgraded", run
    [pool] = run["pools"]
    assert (pool["pool"], pool["method"], pool["to_pool"], pool["step"]) == (
        "pool-1", "move", "pool-3", "upgraded",
    )  # fmt: skip
    assert sorted(pool["bot_downtime_s"]) == moving
    assert copies == {bot: 1 for bot in BOTS}  # one copy of each bot at every moment
    # The old pool is gone, its container too; the fresh one runs the new image.
    with pytest.raises(docker.errors.NotFound):
        container(docker_client, "pool-1")
    status = await pool_status(cluster)
    assert sorted(p["id"] for p in status["pools"]) == ["pool-2", "pool-3"]
    fresh = container(docker_client, "pool-3")
    assert fresh.image.id == images[target]
    bots = await h.bots(ALICE)
    assert {b: bots[b]["poolId"] for b in moving} == {b: "pool-3" for b in moving}
    await assert_fleet_intact(cluster, before, event)
