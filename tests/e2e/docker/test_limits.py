"""The kernel's OOM killer in a real pool container: a memory limit on the pool, two calm
trading bots and one whose strategy keeps 64 MiB more every half second. The kernel kills
the leaking bot, never supervisord, the agent, the preloader or the market-data proxy
(their oom_score_adj is the container's, each bot's 500: agent/oom.py); the neighbours keep their
processes and keep answering; the monitor restarts the killed bot. Then a bot whose
strategy spins on the CPU is reniced to 19 by the pool's root agent (another user's
process: the container's CAP_SYS_NICE), its neighbours not.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import docker
import pytest

from controller.bots.limits import MEASURED_OOM
from tests.e2e.docker.conftest import cluster_in_docker
from tests.e2e.local.test_freqtrade import ALICE, all_running, assert_bots_answer
from tests.exchange import trading_bot
from tests.support import bot_processes, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="module")]
CALM = ["calm-1", "calm-2"]
STRATEGIES = Path(__file__).resolve().parents[3] / "controller" / "strategies"
LEAK = '''
    def bot_start(self, **kwargs) -> None:
        """Keep 64 MiB more every half second, without bound: a leaking strategy."""
        import threading
        import time

        def leak() -> None:
            kept = []
            while True:
                chunk = bytearray(64 << 20)
                for i in range(0, len(chunk), 4096):
                    chunk[i] = 1
                kept.append(chunk)
                time.sleep(0.5)

        threading.Thread(target=leak, daemon=True).start()
'''

SPIN = '''
    def bot_start(self, **kwargs) -> None:
        """Spin on the CPU in a thread of its own, without end: a busy strategy."""
        import threading

        def spin() -> None:
            while True:
                pass

        threading.Thread(target=spin, daemon=True).start()
'''


ROLES = {
    "supervisord": lambda args: "supervisord" in args,
    "agent": lambda args: args.endswith("-m agent"),
    "preloader": lambda args: "preloader.py" in args,
    "marketdata": lambda args: "agent.marketdata" in args,
}


def machinery(container) -> dict[str, int]:
    """Host pids of the pool's machinery in a container, by role."""
    found: dict[str, int] = {}
    for pid, args in container.top(ps_args="-eo pid,args")["Processes"]:
        for role, matches in ROLES.items():
            if matches(args):
                found.setdefault(role, int(pid))
    return found


def oom_score_adj(pid: int) -> int:
    return int(Path(f"/proc/{pid}/oom_score_adj").read_text())


async def events_of(h, bot: str, kind: str) -> list[dict]:
    status, body = await h.call("GET", "/api/pool/events/history?limit=1000")
    assert status == 200, body
    return [e for e in body["events"] if e["type"] == kind and e["instanceId"] == bot]


async def restarted_alone(
    cluster, container, bot: str, was: tuple[str, dict[str, int], dict], timeout: float
) -> None:
    """`bot` killed and restarted by the monitor, nothing else touched: the container keeps
    its start time, the machinery and the calm neighbours their pids, and they answer."""
    started, before, calm = was
    h = cluster.harness

    async def killed() -> list[dict]:
        return await events_of(h, bot, "bot_restart")

    [restart, *_] = await wait_for(killed, timeout, step=1)
    assert restart["reason"] == "bot_not_running"
    container.reload()
    assert container.status == "running" and container.attrs["State"]["StartedAt"] == started
    assert machinery(container) == before  # the same processes
    assert await all_running(cluster, CALM, timeout=60) == calm
    await assert_bots_answer(h, CALM)


async def test_the_kernel_kills_the_leaking_bot_never_the_pools_machinery(
    tmp_path_factory: pytest.TempPathFactory, docker_client: docker.DockerClient, exchange
):
    strategies = tmp_path_factory.mktemp("strategies")
    shutil.copy(STRATEGIES / "DemoStrategy.py", strategies)
    demo = (STRATEGIES / "DemoStrategy.py").read_text()
    (strategies / "LeakStrategy.py").write_text(
        demo.replace("class DemoStrategy(", "class LeakStrategy(") + LEAK
    )
    (strategies / "SpinStrategy.py").write_text(
        demo.replace("class DemoStrategy(", "class SpinStrategy(") + SPIN
    )
    async with cluster_in_docker(
        tmp_path_factory, docker_client, POOL_MEMORY_LIMIT="1500m",
        STRATEGIES_DIR=str(strategies), POOL_BASE_PORT="28100", MARKET_DATA_BASE_PORT="28090",
        # No measured limit (it would restart the leaker at twice its share of the pool,
        # long before the pool's limit): here only the kernel acts.
        BOT_MEMORY_LIMIT="off", BOT_BUSY_CPU="50", BOT_BUSY_WINDOW="5000",
    ) as cluster:  # fmt: skip
        h = cluster.harness
        for bot in CALM:
            await h.provision(ALICE, **trading_bot(exchange.url, bot))
        calm = await all_running(cluster, CALM, timeout=240)

        async def measured() -> dict | None:
            _status, body = await h.call("GET", "/api/bots", ALICE)
            own = {b["instanceId"]: b["process"]["ownMemoryBytes"] for b in body["bots"]}
            return own if all(own.values()) else None

        # Each bot's own memory, read by the root agent from another user's process.
        own = await wait_for(measured, 30)
        print("calm bots' own memory (USS), MiB:", {b: m >> 20 for b, m in own.items()})
        container = docker_client.containers.get("freqtrade-pool-pool-1")
        started = container.attrs["State"]["StartedAt"]
        before = machinery(container)
        assert set(before) == {"supervisord", "agent", "preloader", "marketdata"}, before
        # The machinery at the container's score (0 here: this Docker daemon may not set a
        # negative one), lowered further where the agent may; every bot raised above it.
        assert all(oom_score_adj(pid) <= 0 for pid in before.values()), before
        # The API's pids are the container's; the host sees the bots under other pids.
        host_pids = bot_processes(Path("/pool/bots"), "freqtrade")
        assert {oom_score_adj(pid) for bot in CALM for pid in host_pids[bot]} == {500}

        leaky = {**trading_bot(exchange.url, "leaky"), "strategy": "LeakStrategy"}
        await h.provision(ALICE, **leaky)

        await restarted_alone(cluster, container, "leaky", (started, before, calm), 240)

        _status, body = await h.call("GET", "/api/pool/status")
        [pool] = body["pools"]
        assert pool["limits"]["mode"] == MEASURED_OOM and pool["memory"]["limitBytes"] == 1500 << 20

        # A spinning strategy: its bot is reniced (all its threads), its neighbours are not.
        assert (await h.call("POST", "/api/bots/leaky/stop", ALICE))[0] == 200
        await h.provision(ALICE, **{**trading_bot(exchange.url, "spinner"),
                                    "strategy": "SpinStrategy"})  # fmt: skip

        async def reniced() -> dict | None:
            info = await h.bot("spinner")
            return info if (info["process"] or {}).get("nice") == 19 else None

        info = await wait_for(reniced, 120, step=1)
        print("spinning bot reniced at cpuPercent", info["process"]["cpuPercent"])

        async def calm_nice() -> list | None:
            nice = [(await h.bot(bot))["process"]["nice"] for bot in CALM]
            return nice if all(n is not None and n < 19 for n in nice) else None

        await wait_for(calm_nice, 30)
        await assert_bots_answer(h, CALM)
