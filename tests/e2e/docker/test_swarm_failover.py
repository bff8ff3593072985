"""A partition of a swarm node (issue 15): two dockerds in network namespaces
(tests/e2e/docker/swarm_nodes.py), a pool of trading bots on node 2, node 2's link cut.
Its agent fences its bots within AGENT_FENCE_TIMEOUT, the controller fails the pool over
to node 1 from the bots' backups, every trade made before the cut kept; bot processes are
counted on both nodes through the whole test (never two of one bot); once the link is
back, the old service's task on node 2 is removed, not started again.

The controller runs on the host with DOCKER_HOST at node 1 (the manager); agents and the
exchange emulator reach the host at its address on the nodes' link, and the controller
reaches bots on their node's address (ports published in host mode). Each pool's
directory is a volume on its node (POOL_STORAGE=node, the default on swarm), and nothing
of the backup target is shared with the nodes (BACKUP_TRANSPORT=controller, the default
with it): no pool has a /backup, each agent sends its restore points to the controller.
The failover never reads node 2's disk: it stages each bot's newest restore point from
the controller's BACKUP_DIR and lands it through the new pool's agent. The fence's last
backup round cannot reach the controller from behind the cut, so the trades of the last
moments before it may be lost (docs/swarm.md, the recovery point): the test waits until
the controller holds a point with every trade it read, cuts, and reports `lostSeconds`.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from datetime import UTC, datetime

import docker
import docker.errors
import pytest

from tests.e2e.docker.conftest import cluster_behind_gateway, provision_answering
from tests.e2e.docker.swarm_nodes import SwarmNode, SwarmNodes, swarm_nodes
from tests.e2e.local.test_backups import wait_backed_up
from tests.e2e.local.test_freqtrade import ALICE, all_running
from tests.e2e.trading import trades, wait_trading
from tests.support import ADMIN_TOKEN, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="module")]
BOTS = ["fo-bot-1", "fo-bot-2"]
MARKET_DATA_PORT = 31000  # this module's port range: 31000-31199
BASE_PORT = 31100
FENCE, MARGIN = 10, 10  # seconds: AGENT_FENCE_TIMEOUT, AGENT_FENCE_MARGIN


def set_availability(swarm: SwarmNodes, node: SwarmNode, availability: str) -> None:
    """Placement takes only `active` nodes: node 1 paused puts the first pool on node 2."""
    found = swarm.manager.client.nodes.get(node.node_id)
    spec = dict(found.attrs["Spec"], Availability=availability)
    found.update(spec)


class ProcessCount:
    """Bot processes on every node, sampled until stopped: the most of one bot at once."""

    def __init__(self, nodes: list[SwarmNode]) -> None:
        self.nodes = nodes
        self.most: Counter[str] = Counter()
        self.on: dict[str, set[str]] = {}  # bot -> the nodes it was seen running on
        self.samples = 0
        self._task: asyncio.Task[None] | None = None

    def sample(self) -> None:
        seen: Counter[str] = Counter()
        for node in self.nodes:
            for bot, pids in node.bot_processes().items():
                seen[bot] += len(pids)
                self.on.setdefault(bot, set()).add(node.name)
        for bot, count in seen.items():
            self.most[bot] = max(self.most[bot], count)
        self.samples += 1

    async def run(self) -> None:
        while True:
            await asyncio.to_thread(self.sample)
            await asyncio.sleep(0.2)

    def __enter__(self) -> ProcessCount:
        self._task = asyncio.create_task(self.run())
        return self

    def __exit__(self, *_: object) -> None:
        assert self._task is not None
        self._task.cancel()


async def events(h, kind: str) -> list[dict]:  # type: ignore[no-untyped-def]
    status, body = await h.call("GET", "/api/pool/events/history?limit=1000", ADMIN_TOKEN)
    assert status == 200, body
    return [e for e in body["events"] if e["type"] == kind]


async def test_a_cut_off_node_fences_and_its_bots_fail_over_from_backups(
    tmp_path_factory: pytest.TempPathFactory,
    docker_client: docker.DockerClient,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with swarm_nodes(count=2) as swarm:
        node1, node2 = swarm.nodes
        set_availability(swarm, node1, "pause")
        # The controller (in this process) talks to the manager's dockerd.
        monkeypatch.setenv("DOCKER_HOST", swarm.manager.docker_host)
        async with cluster_behind_gateway(
            tmp_path_factory, docker_client, swarm.host_address,
            POOL_RUNTIME="swarm",
            SWARM_NETWORK="ftpool-failover", POOL_PUBLISH_PORTS="true",
            POOL_BASE_PORT=str(BASE_PORT), MARKET_DATA_BASE_PORT=str(MARKET_DATA_PORT),
            HEALTH_CHECK_INTERVAL="2000", BACKUP_INTERVAL="5000",
            AGENT_FENCE_TIMEOUT=str(FENCE * 1000), AGENT_FENCE_MARGIN=str(MARGIN * 1000),
            BACKUP_TRANSPORT="controller",
        ) as (cluster, exchange):  # fmt: skip
            h = cluster.harness
            await provision_answering(cluster, exchange.url, BOTS)
            assert set(node2.bot_processes()) == set(BOTS) and not node1.bot_processes()
            # Nothing of the backup target in the pool: no /backup, no BACKUP_DIR.
            service = swarm.manager.client.services.get("freqtrade-pool-pool-1")
            container = service.attrs["Spec"]["TaskTemplate"]["ContainerSpec"]
            assert all(m["Target"] != "/backup" for m in container.get("Mounts", []))
            env = dict(e.split("=", 1) for e in container["Env"])
            assert "BACKUP_DIR" not in env and env["BACKUP_TRANSPORT"] == "controller"
            await wait_trading(h, ALICE, BOTS)
            set_availability(swarm, node1, "active")  # where the pool can go now
            with ProcessCount(swarm.nodes) as count:
                before = {bot: await trades(h, ALICE, bot) for bot in BOTS}
                # Sent by node 2's agent: the controller holds every trade read so far.
                read_at = datetime.now(UTC)
                for bot in BOTS:
                    await wait_backed_up(h, bot, len(before[bot]), read_at)
                sent = h.controller.backups.receiver.received
                at_cut = {bot: await trades(h, ALICE, bot) for bot in BOTS}
                cut = time.monotonic()
                swarm.cut(node2)

                def fenced() -> bool:
                    return not node2.bot_processes()

                await wait_for(fenced, FENCE + 60, step=0.2)
                fenced_after = time.monotonic() - cut

                async def moved() -> bool:
                    _, body = await h.call("GET", "/api/bots", ADMIN_TOKEN)
                    return all(b["poolId"] != "pool-1" for b in body["bots"])

                await wait_for(moved, FENCE + MARGIN + 120, step=0.5)
                await all_running(cluster, BOTS, timeout=240)
                answering_after = time.monotonic() - cut
                assert set(node1.bot_processes()) == set(BOTS) and not node2.bot_processes()
                # Restored through the new pool's agent into its volume on node 1: no pool
                # directory under the controller's BOT_BASE_DIR, none left in staging.
                assert not list((cluster.base_dir / "pools").glob("*"))
                assert not list((cluster.base_dir / "migrating").glob("*"))
                # Every trade the controller had a point of is there; those made in the
                # moments before the cut may not be (the recovery point), and are counted.
                lost = {}
                for bot in BOTS:
                    after = await trades(h, ALICE, bot)
                    assert set(before[bot]) <= set(after), (bot, before[bot], after)
                    lost[bot] = len(set(at_cut[bot]) - set(after))
                failed_over = await events(h, "bot_failed_over")
                assert sorted(e["instanceId"] for e in failed_over) == sorted(BOTS), failed_over
                for event in failed_over:
                    assert event["detail"]["fromPool"] == "pool-1"
                    assert event["detail"]["restorePoint"]
                    assert event["detail"]["lostSeconds"] >= 0
                # The points it restored from are the ones node 2's agent sent.
                assert sent >= len(BOTS)
                for bot in BOTS:
                    points = cluster.base_dir / "backups" / "pools" / "pool-1" / bot
                    assert list(points.glob("tradesv3.dryrun.sqlite/*.sqlite")), bot

                mended = time.monotonic()
                swarm.mend(node2)

                def old_task_ended() -> bool:
                    return not node2.client.containers.list(filters={"label": "ftpool.pool=pool-1"})

                await wait_for(old_task_ended, 180, step=1)
                removed_after = time.monotonic() - mended
                assert not node2.bot_processes()  # ended, not started again
                with pytest.raises(docker.errors.NotFound):  # its service is gone
                    swarm.manager.client.services.get("freqtrade-pool-pool-1")
                await all_running(cluster, BOTS)
            # Never two copies of a bot, on one node or on both.
            assert count.samples > 100 and set(count.most) == set(BOTS)
            assert max(count.most.values()) == 1, count.most
            assert all(count.on[bot] == {node1.name, node2.name} for bot in BOTS)
            print(
                f"failover figures: fenced {fenced_after:.1f} s after the cut "
                f"(AGENT_FENCE_TIMEOUT {FENCE} s), bots answering on node 1 "
                f"{answering_after:.1f} s after it (+ margin {MARGIN} s), old task removed "
                f"{removed_after:.1f} s after the link came back; restore points "
                + ", ".join(
                    f"{e['instanceId']}: age {e['detail']['ageSeconds']} s, "
                    f"lost {e['detail']['lostSeconds']} s"
                    for e in failed_over
                )
                + f"; points sent to the controller before the cut: {sent}, trades made "
                f"before the cut and not restored: {lost}"
            )
