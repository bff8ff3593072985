"""End to end in Docker: 12 real trading bots in two real pool containers.

Each bot is a `freqtrade trade --dry-run` process trading against the exchange emulator
on the host's loopback. Runs in order on one cluster: placement, trading through the
proxy, the seed's troubleshooting commands, isolation between bot users, metrics and
health, adoption after a controller restart, and a pool container dying under us and
being removed: the bots come back with every trade they had.
"""

from __future__ import annotations

import json
import time
from datetime import datetime
from pathlib import Path

import docker
import pytest

from tests.e2e.local.test_freqtrade import ALICE, all_running, assert_bots_answer, states
from tests.e2e.trading import (
    assert_market_data_proxied,
    assert_trades_kept,
    assert_trading_api,
    now,
    trades,
    wait_trading,
)
from tests.exchange import trading_bot
from tests.support import bot_processes, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="module")]
BOTS = [f"alice-bot-{i}" for i in range(1, 13)]


def pool_container(client: docker.DockerClient, pool_id: str):
    return client.containers.get(f"freqtrade-pool-{pool_id}")


def run(client: docker.DockerClient, pool_id: str, cmd: list[str], user: str = "root"):
    result = pool_container(client, pool_id).exec_run(cmd, user=user)
    return result.exit_code, result.output.decode(errors="replace")


def container_bot_processes() -> dict[str, list[int]]:
    """Bot id → host pids of freqtrade processes whose cwd is /pool/bots/<id> in a container."""
    return bot_processes(Path("/pool/bots"), "freqtrade")


def process_identity(pid: int) -> tuple[int, bytes]:
    """A process's real uid and its environment block."""
    status = Path(f"/proc/{pid}/status").read_text()
    uid = int(status.split("Uid:")[1].split()[0])
    return uid, Path(f"/proc/{pid}/environ").read_bytes()


async def test_twelve_bots_in_two_containers(docker_cluster, docker_client, exchange):
    h = docker_cluster.harness
    placed = [await h.provision(ALICE, **trading_bot(exchange.url, bot)) for bot in BOTS]
    assert [p["poolId"] for p in placed] == ["pool-1"] * 10 + ["pool-2"] * 2
    assert [p["port"] for p in placed] == list(range(9000, 9012))
    await all_running(docker_cluster, BOTS, timeout=240)
    for pool_id in ("pool-1", "pool-2"):
        container = pool_container(docker_client, pool_id)
        assert container.status == "running"
        assert container.labels["ftpool.pool"] == pool_id
        assert container.attrs["HostConfig"]["RestartPolicy"]["Name"] == "unless-stopped"
        env = dict(e.split("=", 1) for e in container.attrs["Config"]["Env"])
        assert env["POOL_ID"] == pool_id


async def test_proxy_reaches_every_bot(docker_cluster):
    await assert_bots_answer(docker_cluster.harness, BOTS)


async def test_bots_trade_in_their_containers(docker_cluster):
    h = docker_cluster.harness
    await wait_trading(h, ALICE, BOTS)
    for bot in BOTS:
        await assert_trading_api(h, ALICE, bot)
    await assert_market_data_proxied(h, ["pool-1", "pool-2"])


async def test_seed_troubleshooting_commands(docker_client):
    code, out = run(docker_client, "pool-1", ["supervisorctl", "status"])
    assert code == 0, out
    running = {line.split()[0] for line in out.splitlines() if "RUNNING" in line}
    # The pool's own programs (the agent, its event listener, the preloader, the market-data
    # proxy), then one per bot.
    pool_programs = {"agent", "agent-events", "preloader", "marketdata"}
    assert running == {*pool_programs, *(f"bot-{b}" for b in BOTS[:10])}
    assert all(f"bot-{b}" in out for b in BOTS[:10])
    code, log = run(docker_client, "pool-1", ["cat", f"/var/log/supervisor/bot-{BOTS[0]}.log"])
    assert code == 0 and "to: RUNNING" in log, log[-2000:]
    code, config = run(docker_client, "pool-2", ["cat", f"/pool/bots/{BOTS[10]}/config.json"])
    assert code == 0 and json.loads(config)["bot_name"] == BOTS[10]
    # The bot's public market data goes through its pool's proxy (pool-2: the second port);
    # its private URLs are left as the user set them.
    urls = json.loads(config)["exchange"]["ccxt_config"]["urls"]["api"]
    assert urls["public"].startswith("http://127.0.0.1:8601/e/binance/"), urls["public"]
    assert "127.0.0.1:8601" not in urls["private"], urls["private"]


async def test_bot_users_are_isolated(docker_cluster, docker_client):
    # Slot 0 of pool-1 is BOTS[0] (user ftbot0); slot 1 is BOTS[1] (ftbot1).
    own = run(docker_client, "pool-1", ["cat", f"/pool/bots/{BOTS[0]}/config.json"], "ftbot0")
    assert own[0] == 0
    other = run(docker_client, "pool-1", ["cat", f"/pool/bots/{BOTS[1]}/config.json"], "ftbot0")
    assert other[0] != 0 and "Permission denied" in other[1]
    listing = run(docker_client, "pool-1", ["ls", f"/pool/bots/{BOTS[1]}"], "ftbot0")
    assert listing[0] != 0
    # supervisord's socket (and so control of every bot) is root's only.
    ctl = run(docker_client, "pool-1", ["supervisorctl", "status"], "ftbot0")
    assert ctl[0] != 0
    token = run(docker_client, "pool-1", ["cat", "/run/ftpool/pool-token"], "ftbot0")
    assert token[0] != 0
    # Each bot's port is held by that bot's own user, as its agent checks.
    current = await states(docker_cluster)
    assert {current[b]["process"]["portOk"] for b in BOTS} == {True}
    # Every bot process runs as its slot's user, and none inherited the pool token.
    for bot, pids in container_bot_processes().items():
        for pid in pids:
            uid, environ = process_identity(pid)
            assert uid == 20000 + BOTS.index(bot) % 10, (bot, uid)
            assert b"POOL_TOKEN=" not in environ


async def test_pool_status_reports_container_metrics_and_health(docker_cluster, docker_client):
    h = docker_cluster.harness

    async def measured():
        status, body = await h.call("GET", "/api/pool/status")
        assert status == 200
        pools = body["pools"]
        ok = all(p["memory"]["usedBytes"] and p["memory"]["runtimeBytes"] for p in pools)
        return body if ok and all(p["cpuPercent"] is not None for p in pools) else None

    body = await wait_for(measured, 30)
    assert [p["containerName"] for p in body["pools"]] == [
        "freqtrade-pool-pool-1",
        "freqtrade-pool-pool-2",
    ]
    # Ten real bots, preloaded: ~60 MiB each of their own on top of the shared FreqTrade.
    assert body["pools"][0]["memory"]["runtimeBytes"] > 10 * 30 * 2**20

    def healthy():
        states = [
            pool_container(docker_client, p).attrs["State"].get("Health", {}).get("Status")
            for p in ("pool-1", "pool-2")
        ]
        return states == ["healthy", "healthy"]

    await wait_for(healthy, 90, step=2)


async def test_controller_restart_readopts_containers(docker_cluster):
    before = await all_running(docker_cluster, BOTS)
    await docker_cluster.restart()
    after = await all_running(docker_cluster, BOTS, timeout=60)
    assert after == before
    processes = container_bot_processes()
    assert {b: len(p) for b, p in processes.items()} == {b: 1 for b in BOTS}


async def pool2_trades(docker_cluster) -> dict[str, dict[int, dict]]:
    return {b: await trades(docker_cluster.harness, ALICE, b) for b in BOTS[10:]}


async def test_dying_pool_is_seen_at_once_and_recovered(docker_cluster, docker_client):
    h = docker_cluster.harness
    before = await all_running(docker_cluster, BOTS)
    event, kept = now(), await pool2_trades(docker_cluster)
    pool_container(docker_client, "pool-2").kill()
    killed_at = time.monotonic()

    async def seen():
        _, body = await h.call("GET", "/api/pool/status")
        pool = next(p for p in body["pools"] if p["id"] == "pool-2")
        return pool["status"] == "suspect" and pool["lastRuntimeEvent"] is not None

    # Seen from Docker's event stream, long before POOL_GRACE (5 s) of silence would tell;
    # bench/pool_death.py measures how soon.
    await wait_for(seen, 4, step=0.05)
    after = await all_running(docker_cluster, BOTS, timeout=180)
    assert all(after[b] == before[b] for b in BOTS[:10])  # pool-1 untouched
    # pool-2's bots came back: started after the kill (pids inside a new container may repeat).
    current = await states(docker_cluster)
    since_kill = time.monotonic() - killed_at
    assert all(current[b]["process"]["uptimeSeconds"] < since_kill for b in BOTS[10:])
    assert all(current[b]["process"]["uptimeSeconds"] > since_kill for b in BOTS[:10])
    processes = container_bot_processes()
    assert {b: len(p) for b, p in processes.items()} == {b: 1 for b in BOTS}
    for bot, kept_trades in (await pool2_trades(docker_cluster)).items():
        assert_trades_kept(kept[bot], kept_trades, event)


async def pool_recovered(h, pool_id: str, since: datetime) -> bool:
    """Whether the monitor recovered `pool_id` (ok) after `since`."""
    status, body = await h.call("GET", "/api/pool/events/history?limit=1000")
    assert status == 200, body
    return any(
        e["type"] == "pool_recovery" and e["poolId"] == pool_id and e["detail"].get("ok")
        and datetime.fromisoformat(e["timestamp"]) >= since
        for e in body["events"]
    )  # fmt: skip


async def test_removed_pool_is_replaced_with_its_bots_and_their_data(docker_cluster, docker_client):
    """`docker rm -f` of a pool: a new container on the same bot directories, each bot once."""
    bots_dir = docker_cluster.base_dir / "pools" / "pool-2" / "bots"
    for bot in BOTS[10:]:
        (bots_dir / bot / "user_data" / "kept.txt").write_text(bot)
    before = await all_running(docker_cluster, BOTS)
    event, kept = now(), await pool2_trades(docker_cluster)
    old = pool_container(docker_client, "pool-2")
    old.remove(force=True)
    # The bots' last states come from the old container until the monitor has replaced it:
    # wait for that recovery first, or all_running may return the state from before.
    await wait_for(lambda: pool_recovered(docker_cluster.harness, "pool-2", event), 180, step=0.5)
    after = await all_running(docker_cluster, BOTS, timeout=180)
    assert all(after[b] == before[b] for b in BOTS[:10])  # pool-1 untouched
    assert pool_container(docker_client, "pool-2").id != old.id
    for bot in BOTS[10:]:
        assert (bots_dir / bot / "user_data" / "kept.txt").read_text() == bot
    processes = container_bot_processes()
    assert {b: len(p) for b, p in processes.items()} == {b: 1 for b in BOTS}
    await assert_bots_answer(docker_cluster.harness, BOTS[10:])
    for bot, kept_trades in (await pool2_trades(docker_cluster)).items():
        assert_trades_kept(kept[bot], kept_trades, event)
        await assert_trading_api(docker_cluster.harness, ALICE, bot)
