"""Per-bot cgroups in a real pool container on this cgroup v1 host (POOL_CGROUPS=v1,
agent/cgroups.py): the pool runs under --cgroup-parent /ftpool/pool-1, each bot in a group
of its own under the container's, its memory limit and CPU cap the kernel's.

A leaking bot is killed by its own group's limit (its group's oom_kill counter rises, an
event says why), never supervisord, the agent, the preloader or a neighbour; a spinning
bot is held to its own CPU quota (its limits.cpu, below BOT_CPU_LIMIT) while its neighbours'
groups run and answer. Ports 32000-32019.

POOL_CGROUPS=auto picks v1 here, and a removed pool's /ftpool/<pool> groups leave the host
with it; the controller's start sweeps those of pools it no longer has. Ports 33400-33419.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import time
from pathlib import Path

import docker
import pytest

from controller.runtimes.cgroups import remove_tree
from tests.e2e.docker.conftest import cluster_in_docker
from tests.e2e.docker.test_limits import (
    LEAK,
    SPIN,
    STRATEGIES,
    events_of,
    machinery,
    restarted_alone,
)
from tests.e2e.local.test_freqtrade import ALICE, all_running, assert_bots_answer
from tests.exchange import trading_bot
from tests.support import bot_processes, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="module")]
CALM = ["calm-1", "calm-2"]
HOST_CGROUP = Path("/sys/fs/cgroup")
PARENT = "ftpool/pool-1"
BOT_MEMORY = 400 << 20
BOT_CPU = 0.5
SPIN_CPU = 0.3  # the spinner's own limit (limits.cpu): a user may ask for less than BOT_CPU


def group(hierarchy: str, container_id: str, bot: str) -> Path:
    """A bot's group as the host sees it."""
    return HOST_CGROUP / hierarchy / PARENT / container_id / f"bot-{bot}"


def read_int(path: Path, key: str | None = None) -> int:
    text = path.read_text()
    if key is None:
        return int(text)
    return next(int(v) for k, v in (line.split() for line in text.splitlines()) if k == key)


def remove_groups() -> None:
    """What runs under /ftpool/pool-1 once its containers are gone (Docker leaves the
    parent it made; the groups are empty by then)."""
    for hierarchy in HOST_CGROUP.iterdir():
        top = hierarchy / PARENT
        if top.is_dir():
            for d in sorted(top.rglob("*"), key=lambda p: -len(p.parts)):
                if d.is_dir():
                    d.rmdir()
            top.rmdir()
        with contextlib.suppress(OSError):  # another pool's groups may be there
            top.parent.rmdir()


@pytest.fixture
def strategies(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("strategies")
    shutil.copy(STRATEGIES / "DemoStrategy.py", path)
    demo = (STRATEGIES / "DemoStrategy.py").read_text()
    for name, body in (("LeakStrategy", LEAK), ("SpinStrategy", SPIN)):
        (path / f"{name}.py").write_text(
            demo.replace("class DemoStrategy(", f"class {name}(") + body
        )
    return path


async def test_each_bot_is_limited_by_its_own_cgroup(
    tmp_path_factory: pytest.TempPathFactory,
    docker_client: docker.DockerClient,
    exchange,
    strategies: Path,
):
    if not (HOST_CGROUP / "memory" / "memory.limit_in_bytes").exists():
        pytest.fail("this test needs a cgroup v1 Docker host (CI's is one)")
    remove_groups()
    async with cluster_in_docker(
        tmp_path_factory, docker_client, POOL_CGROUPS="v1", POOL_MEMORY_LIMIT="2g",
        BOT_MEMORY_LIMIT=str(BOT_MEMORY), BOT_CPU_LIMIT=str(BOT_CPU),
        # Only the kernel acts on memory here (the measured limit's grace is a day).
        BOT_MEMORY_GRACE=str(24 * 3600 * 1000), STRATEGIES_DIR=str(strategies),
        POOL_BASE_PORT="32010", MARKET_DATA_BASE_PORT="32000",
    ) as cluster:  # fmt: skip
        h = cluster.harness
        for bot in CALM:
            await h.provision(ALICE, **trading_bot(exchange.url, bot))
        calm = await all_running(cluster, CALM, timeout=240)
        container = docker_client.containers.get("freqtrade-pool-pool-1")
        cid, started = container.id, container.attrs["State"]["StartedAt"]

        _status, body = await h.call("GET", "/api/pool/status")
        [pool] = body["pools"]
        assert pool["limits"]["mode"] == "cgroup-v1", pool["limits"]

        # Each bot's process is in its own group, with its limits; the machinery is not.
        host_pids = bot_processes(Path("/pool/bots"), "freqtrade")
        before = machinery(container)
        assert set(before) == {"supervisord", "agent", "preloader", "marketdata"}, before
        for bot in CALM:
            memory = group("memory", cid, bot)
            assert read_int(memory / "memory.limit_in_bytes") == BOT_MEMORY
            procs = {int(p) for p in (memory / "cgroup.procs").read_text().split()}
            assert set(host_pids[bot]) <= procs and not procs & set(before.values())
            cpu = group("cpu", cid, bot)
            assert read_int(cpu / "cpu.cfs_quota_us") == BOT_CPU * read_int(
                cpu / "cpu.cfs_period_us"
            )
            assert set(host_pids[bot]) <= {
                int(p) for p in (group("cpuacct", cid, bot) / "cgroup.procs").read_text().split()
            }
        # Bots (other users) cannot look into the bound groups, let alone write them.
        as_bot = "import os; os.setgroups([]); os.setgid(20001); os.setuid(20001); "
        for attempt in (
            "os.listdir('/cgroup/memory')",
            f"open('/cgroup/memory/{cid}/bot-calm-1/cgroup.procs', 'w').write('0')",
        ):
            code, out = container.exec_run(["/opt/ftpool/bin/python", "-c", as_bot + attempt])
            assert code != 0 and b"PermissionError" in out, out

        # A leaking bot: the kernel kills it at its own group's limit.
        await h.provision(ALICE, **{**trading_bot(exchange.url, "leaky"),
                                    "strategy": "LeakStrategy"})  # fmt: skip

        async def oom_killed() -> list[dict]:
            events = await events_of(h, "leaky", "bot_memory_limit")
            return [e for e in events if e["detail"].get("action") == "oom_kill"]

        [event, *_] = await wait_for(oom_killed, 240, step=1)
        print("leaky bot's OOM kill:", event)
        assert event["reason"] == "killed by the kernel at its cgroup's memory limit"
        assert event["detail"]["limitBytes"] == BOT_MEMORY
        leaky = group("memory", cid, "leaky")
        assert read_int(leaky / "memory.oom_control", "oom_kill") >= 1
        assert read_int(leaky / "memory.max_usage_in_bytes") <= BOT_MEMORY
        for bot in CALM:  # the neighbours' groups never ran out
            assert read_int(group("memory", cid, bot) / "memory.oom_control", "oom_kill") == 0

        await restarted_alone(cluster, container, "leaky", (started, before, calm), 120)

        # A spinning bot is held to its own CPU quota; its neighbours' groups run beside it.
        assert (await h.call("POST", "/api/bots/leaky/stop", ALICE))[0] == 200
        own = {"strategy": "SpinStrategy", "limits": {"cpu": SPIN_CPU}}
        await h.provision(ALICE, **{**trading_bot(exchange.url, "spinner"), **own})
        spin_cpu = group("cpu", cid, "spinner")

        async def throttled() -> int | None:
            n = read_int(spin_cpu / "cpu.stat", "nr_throttled") if spin_cpu.exists() else 0
            return n if n >= 20 else None

        await wait_for(throttled, 180, step=1)
        usage = {b: group("cpuacct", cid, b) / "cpuacct.usage" for b in ["spinner", *CALM]}
        first, t0 = {b: read_int(p) for b, p in usage.items()}, time.monotonic()
        await assert_bots_answer(h, CALM)
        await asyncio.sleep(5)
        last, wall = {b: read_int(p) for b, p in usage.items()}, time.monotonic() - t0
        used = {b: (last[b] - first[b]) / 1e9 for b in usage}
        print(f"CPU seconds in {wall:.2f} s:", used)
        # The kernel's quota: at most its own SPIN_CPU of a CPU over any stretch (a period's
        # slack), where its neighbours have BOT_CPU_LIMIT's.
        assert read_int(spin_cpu / "cpu.cfs_quota_us") == round(SPIN_CPU * 100_000)
        assert 0 < used["spinner"] <= SPIN_CPU * wall + 0.1
        spinner = await h.bot("spinner", ALICE)
        assert spinner["limits"]["cpu"] == SPIN_CPU and spinner["limits"]["cpuOwn"] is True
        assert spinner["limits"]["cpuEnforcement"] == "cgroup"
        assert spinner["usage"]["cpu"]["limitPercent"] == SPIN_CPU * 100
        print("spinner's usage against its limits:", spinner["usage"], spinner["busy"])
        assert read_int(spin_cpu / "cpu.stat", "throttled_time") > 0
        for bot in CALM:
            assert used[bot] > 0  # the neighbours ran
            assert read_int(group("cpu", cid, bot) / "cpu.stat", "nr_throttled") < read_int(
                spin_cpu / "cpu.stat", "nr_throttled"
            )
        await assert_bots_answer(h, CALM)
        assert machinery(container) == before
    remove_groups()


def pool_groups(pool: str) -> list[Path]:
    """The pool's parent group in each hierarchy the host mounts (Docker makes it in every
    one, not only the three bound into the pool), as the host sees it."""
    return [h / "ftpool" / pool for h in HOST_CGROUP.iterdir() if h.is_dir()]


async def test_a_removed_pools_groups_leave_the_host(
    tmp_path_factory: pytest.TempPathFactory, docker_client: docker.DockerClient, exchange
):
    if not (HOST_CGROUP / "memory" / "memory.limit_in_bytes").exists():
        pytest.fail("this test needs a cgroup v1 Docker host (CI's is one)")
    remove_groups()
    # An earlier controller's pool, removed while this one was away: its groups left over.
    stale = pool_groups("pool-77")
    for top in stale:  # in every hierarchy, as Docker made it
        (top / "old-container" / "bot-gone").mkdir(parents=True)
    not_ours = HOST_CGROUP / "memory" / "ftpool" / "not.a.pool"
    not_ours.mkdir()
    try:
        async with cluster_in_docker(
            tmp_path_factory, docker_client, POOL_CGROUPS="auto", POOL_CLEANUP_GRACE="0",
            POOL_BASE_PORT="33410", MARKET_DATA_BASE_PORT="33400",
        ) as cluster:  # fmt: skip
            h = cluster.harness
            assert not any(top.exists() for top in stale)  # swept at the controller's start
            assert not_ours.is_dir()  # no pool id: not ours, left alone

            await h.provision(ALICE, **trading_bot(exchange.url, "short-lived"))
            await all_running(cluster, ["short-lived"], timeout=240)
            _status, body = await h.call("GET", "/api/pool/status")
            [pool] = body["pools"]
            assert pool["limits"]["mode"] == "cgroup-v1", pool["limits"]  # auto: v1 here
            cid = docker_client.containers.get("freqtrade-pool-pool-1").id
            assert group("memory", cid, "short-lived").is_dir()
            made = [top for top in pool_groups("pool-1") if top.is_dir()]
            print("pool-1's groups on the host:", [str(top) for top in made])
            assert {"memory", "cpu", "cpuacct", "pids"} <= {top.parent.parent.name for top in made}

            assert (await h.call("DELETE", "/api/bots/short-lived", ALICE))[0] == 200

            async def removed() -> bool:
                status, body = await h.call("POST", "/api/pool/cleanup")
                assert status == 200, body
                return body["removedPools"] == 1 or None

            await wait_for(removed, 120, step=1)
            with pytest.raises(docker.errors.NotFound):
                docker_client.containers.get(cid)
            # Its container's group and the bot's below it, in every hierarchy: all gone.
            assert [top for top in pool_groups("pool-1") if top.exists()] == []
    finally:
        not_ours.rmdir()
        for top in stale:
            remove_tree(top)
        remove_groups()
