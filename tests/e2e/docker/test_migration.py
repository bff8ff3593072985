"""Migration end to end: real legacy containers of real freqtrade bots into real pools, and back.

The legacy fleet is what a platform had before ftpool: one container `freqtrade-<id>` per
bot, its directory `BOT_BASE_DIR/<user>/<id>/` with config, strategy and a trade
database holding known rows; plus a bot ftpool itself provisioned in legacy mode. Every
bot is a `freqtrade trade --dry-run` process trading against the exchange emulator, so
its trade database grows while it runs; each move must keep every trade, none twice. The
migration CLI runs as a real subprocess against the running controller. Runs in order on
one cluster.
"""

from __future__ import annotations

import json
from pathlib import Path

import aiohttp
import docker
import pytest
import pytest_asyncio

from controller.botconfig import DEFAULT_CONFIG
from tests.e2e.docker.conftest import POOL_IMAGE, cluster_in_docker
from tests.e2e.docker.test_docker import container_bot_processes
from tests.e2e.trading import STRATEGY, assert_trades_kept, now, trades
from tests.exchange import trading_bot
from tests.support import file_digests, read_rows, user_token, wait_for, write_rows

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="module")]

ALICE = user_token("alice")
BOB = user_token("bob")
CAROL = user_token("carol")
DB = "tradesv3.dryrun.sqlite"
# The discovered legacy bots: owner, API port, known trade rows.
LEGACY = {
    "leg-a1": ("alice", 9421, [(1, "BTC/USDT"), (2, "ETH/USDT")]),
    "leg-a2": ("alice", 9422, [(3, "XRP/USDT")]),
    "leg-b1": ("bob", 9423, [(4, "SOL/USDT"), (5, "ADA/USDT"), (6, "DOT/USDT")]),
}
MANAGED = "leg-c1"  # carol's, provisioned by ftpool with POOL_MODE_ENABLED=false
MANAGED_ROWS = [(9, "LTC/USDT")]
TOKENS = {"leg-a1": ALICE, "leg-a2": ALICE, "leg-b1": BOB, MANAGED: CAROL}
LATER = ["leg-d1", "leg-new"]  # Alice's, provisioned with pool mode off, then on
EXCHANGE_SECRET = "legacy-exchange-secret-0123456789"
LABEL = "ftpool.e2e-legacy"


def legacy_config(bot: str, port: int, exchange_url: str) -> dict:
    trading = trading_bot(exchange_url, bot)["config"]
    return {
        **DEFAULT_CONFIG,
        **trading,
        "max_open_trades": 5,
        "bot_name": f"{bot}-legacy",
        "strategy": STRATEGY,
        "user_data_dir": "user_data",
        "exchange": {**trading["exchange"], "key": "legacy-key", "secret": EXCHANGE_SECRET},
        "api_server": {
            "enabled": True, "listen_ip_address": "127.0.0.1", "listen_port": port,
            "username": "legacy", "password": "legacy-password", "jwt_secret_key": "x" * 32,
            "ws_token": "legacy-ws", "CORS_origins": [],
        },
    }  # fmt: skip


def start_legacy(
    client: docker.DockerClient, base: Path, strategy: Path, bot: str, exchange_url: str
) -> None:
    """A legacy bot as the seed ran it: its own container over its own directory."""
    user, port, rows = LEGACY[bot]
    directory = base / user / bot
    (directory / "user_data" / "strategies").mkdir(parents=True)
    (directory / "config.json").write_text(json.dumps(legacy_config(bot, port, exchange_url)))
    (directory / "user_data" / "strategies" / strategy.name).write_bytes(strategy.read_bytes())
    write_rows(directory / DB, rows)
    client.containers.run(
        POOL_IMAGE, ["trade", "--config", "config.json"], entrypoint=["freqtrade"],
        name=f"freqtrade-{bot}", detach=True, network_mode="host", working_dir="/freqtrade/bot",
        volumes={str(directory): {"bind": "/freqtrade/bot", "mode": "rw"}}, labels={LABEL: "1"},
    )  # fmt: skip


def remove_legacy(client: docker.DockerClient) -> None:
    for c in client.containers.list(all=True, filters={"label": LABEL}):
        c.remove(force=True)


def snapshot(client: docker.DockerClient, base: Path) -> tuple[object, ...]:
    """Containers, files and known trade rows; not the trade databases the bots write to."""
    containers = sorted((c.name, c.id, c.status) for c in client.containers.list(all=True)
                        if c.name.startswith("freqtrade-"))  # fmt: skip
    files = file_digests(
        base, lambda rel: rel.startswith(("pools/", "ftpool", "backups/")) or DB in rel
    )
    rows = {bot: read_rows(base / user / bot / DB) for bot, (user, _p, _r) in LEGACY.items()}
    return containers, files, rows


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def legacy_cluster(tmp_path_factory, docker_client):
    remove_legacy(docker_client)
    async with cluster_in_docker(
        tmp_path_factory,
        docker_client,
        MAX_BOTS_PER_CONTAINER="4",
        POOL_BASE_PORT="9300",
        POOL_MODE_ENABLED="false",
    ) as c:
        try:
            yield c
        finally:
            remove_legacy(docker_client)
            for bot in [*TOKENS, *LATER]:
                for container in docker_client.containers.list(
                    all=True, filters={"name": f"^freqtrade-{bot}$"}
                ):
                    container.remove(force=True)


async def legacy_trades(h, bot: str) -> dict[int, dict]:
    """A discovered legacy bot's trades, open and closed, from its own API (ftpool holds no
    credentials for it)."""
    auth = {"Authorization": aiohttp.encode_basic_auth("legacy", "legacy-password")}
    api = f"http://127.0.0.1:{LEGACY[bot][1]}/api/v1"
    async with h.http.get(f"{api}/status", headers=auth) as r:
        assert r.status == 200, await r.text()
        open_trades = await r.json()
    async with h.http.get(f"{api}/trades?limit=500", headers=auth) as r:
        assert r.status == 200, await r.text()
        closed = (await r.json())["trades"]
    return {t["trade_id"]: t for t in [*closed, *open_trades]}


async def bot_trades(h, bot: str) -> dict[int, dict]:
    """A bot's trades: through the proxy once ftpool runs it, else from its own API."""
    status, _info = await h.call("GET", f"/api/bots/{bot}", TOKENS.get(bot, ALICE))
    if status == 200:
        return await trades(h, TOKENS.get(bot, ALICE), bot)
    return await legacy_trades(h, bot)


async def direct_ping(h, port: int) -> bool:
    try:
        async with h.http.get(f"http://127.0.0.1:{port}/api/v1/ping") as r:
            return r.status == 200
    except OSError:
        return False


async def reachable(h, bots) -> None:
    """Each bot runs once, answers ping and show_config through the proxy, with its config."""
    for bot in bots:
        await wait_for(lambda bot=bot: _running(h, bot), timeout=180, step=0.5)
    for bot in bots:
        status, body = await h.call("GET", f"/api/bots/{bot}/ping", TOKENS.get(bot, ALICE))
        assert (status, body) == (200, {"status": "pong"}), bot
        status, config = await h.call(
            "GET", f"/bots/{bot}/api/v1/show_config", TOKENS.get(bot, ALICE)
        )
        assert status == 200, config
        if bot in LEGACY:  # the legacy config came along: its own settings, not ftpool's
            assert config["bot_name"] == f"{bot}-legacy" and config["max_open_trades"] == 5
    counts = {b: len(p) for b, p in container_bot_processes().items()}
    assert {b: counts.get(b, 0) for b in bots} == dict.fromkeys(bots, 1), counts


async def _running(h, bot: str) -> bool:
    status, info = await h.call("GET", f"/api/bots/{bot}", TOKENS.get(bot, ALICE))
    proc = info.get("process") if status == 200 else None
    return bool(proc and info["status"] == "running" and proc["ping"]["ok"])


async def where(h, bot: str) -> dict:
    status, info = await h.call("GET", f"/api/pool/bot/{bot}", TOKENS.get(bot, ALICE))
    assert status == 200, info
    return info


def pooled_rows(cluster, info: dict, bot: str) -> list:
    return read_rows(cluster.base_dir / "pools" / info["poolId"] / "bots" / bot / DB)


async def test_legacy_fleet_is_discovered(legacy_cluster, docker_client, exchange):
    c = legacy_cluster
    h = c.harness
    strategy = h.settings.strategies_path / f"{STRATEGY}.py"
    for bot in LEGACY:
        start_legacy(docker_client, c.base_dir, strategy, bot, exchange.url)
    # ftpool's own legacy bot: a container of its own, named after it.
    created = await h.provision(CAROL, **trading_bot(exchange.url, MANAGED))
    await reachable(h, [MANAGED])
    managed = docker_client.containers.get(f"freqtrade-{MANAGED}")
    assert managed.labels["ftpool.pool"] == created["poolId"]
    info = await where(h, MANAGED)
    write_rows(c.base_dir / "pools" / info["poolId"] / "bots" / MANAGED / DB, MANAGED_ROWS)
    assert (info["mode"], info["managed"], info["isPooled"]) == ("legacy", True, False)
    for _user, port, _rows in LEGACY.values():
        assert await wait_for(lambda port=port: direct_ping(h, port), timeout=120, step=0.5)

    status, st = await h.call("GET", "/api/pool/status")
    assert status == 200
    found = {b["instanceId"]: (b["userId"], b["containerName"], b["state"], b["port"])
             for b in st["legacyBots"]}  # fmt: skip
    assert found == {b: (u, f"freqtrade-{b}", "running", p) for b, (u, p, _r) in LEGACY.items()}
    info = await where(h, "leg-a1")
    assert (info["mode"], info["managed"], info["poolId"]) == ("legacy", False, None)
    assert info["connection"]["port"] == 9421
    status, _body = await h.call("GET", "/api/pool/bot/leg-a1", BOB)
    assert status == 403  # another user's legacy bot
    # Its id is taken: a new bot of that id would hide it from its owner and from migration.
    status, body = await h.call("POST", "/api/bots", BOB, json={"instanceId": "leg-a1"})
    assert status == 409, body


async def test_every_legacy_bot_trades(legacy_cluster):
    h = legacy_cluster.harness

    async def all_traded() -> bool:
        return all([await bot_trades(h, bot) for bot in TOKENS])

    await wait_for(all_traded, 240, step=2)


async def test_dry_run_changes_nothing(legacy_cluster, docker_client):
    c = legacy_cluster
    h = c.harness
    before = snapshot(docker_client, c.base_dir), await h.records()
    code, out = await h.migrate("--dry-run", "--json")
    assert code == 0, out
    plan = {b["instanceId"]: (b["source"], b["toPool"], b["port"]) for b in json.loads(out)["bots"]}
    assert plan == {
        "leg-a1": ("legacy-container", "pool-2", 9304),
        "leg-a2": ("legacy-container", "pool-2", 9305),
        "leg-b1": ("legacy-container", "pool-2", 9306),
        MANAGED: ("legacy-pool", "pool-2", 9307),
    }
    code, out = await h.migrate("--dry-run", "--verbose")
    assert code == 0 and "4 bot(s) to migrate" in out, out
    assert EXCHANGE_SECRET not in out
    assert (snapshot(docker_client, c.base_dir), await h.records()) == before


async def test_failed_verification_rolls_back_to_the_running_legacy_bot(
    legacy_cluster, docker_client
):
    c = legacy_cluster
    h = c.harness
    container = docker_client.containers.get("freqtrade-leg-b1")
    event, kept = now(), await legacy_trades(h, "leg-b1")
    code, out = await h.migrate("--execute", "--bot", "leg-b1", "--verify-timeout", "0.001")
    assert code == 1 and "rolled_back" in out, out
    container.reload()
    assert container.status == "running"  # the very same container, started again
    assert await wait_for(lambda: direct_ping(h, 9423), timeout=120, step=0.5)
    assert read_rows(c.base_dir / "bob" / "leg-b1" / DB) == LEGACY["leg-b1"][2]
    status, _info = await h.call("GET", "/api/bots/leg-b1")
    assert status == 404  # not imported
    assert "leg-b1" not in container_bot_processes()  # no pooled copy runs
    assert_trades_kept(kept, await legacy_trades(h, "leg-b1"), event)


async def test_execute_migrates_every_bot_with_its_data(legacy_cluster, docker_client):
    c = legacy_cluster
    h = c.harness
    event, kept = now(), {bot: await bot_trades(h, bot) for bot in TOKENS}
    code, out = await h.migrate("--execute", "--verbose")
    assert code == 0, out
    assert "4 of 4 migrated" in out and EXCHANGE_SECRET not in out
    await reachable(h, list(TOKENS))
    for bot in TOKENS:
        assert_trades_kept(kept[bot], await trades(h, TOKENS[bot], bot), event)
    for bot, (user, _port, rows) in LEGACY.items():
        info = await where(h, bot)
        assert (info["mode"], info["managed"]) == ("pooled", True)
        assert pooled_rows(c, info, bot) == rows
        assert not docker_client.containers.list(all=True, filters={"name": f"^freqtrade-{bot}$"})
        assert not (c.base_dir / user / bot).exists()  # its backup keeps it
    info = await where(h, MANAGED)
    assert info["mode"] == "pooled" and pooled_rows(c, info, MANAGED) == MANAGED_ROWS
    assert not docker_client.containers.list(all=True, filters={"name": f"^freqtrade-{MANAGED}$"})
    # Re-running finds nothing left to do.
    code, out = await h.migrate("--execute")
    assert code == 0 and "0 of 0 migrated" in out, out


async def test_status_reports_every_run(legacy_cluster):
    h = legacy_cluster.harness
    code, out = await h.migrate("--status")
    assert code == 0, out
    assert "4 bot(s) in the migration log: 4 migrated" in out
    code, out = await h.migrate("--status", "--json", "--bot", "leg-b1")
    runs = json.loads(out)["runs"]
    assert [r["outcome"] for r in runs] == ["rolled_back", "migrated"]
    assert [s["name"] for s in runs[1]["steps"]] == [
        "stop", "backup", "allocate", "start", "verify", "cleanup",
    ]  # fmt: skip
    backup = Path(runs[1]["backup"])
    assert read_rows(backup / "files" / DB) == LEGACY["leg-b1"][2]
    assert json.loads((backup / "container.json").read_text())["Name"] == "/freqtrade-leg-b1"
    log_text = (legacy_cluster.base_dir / ".migration-log.json").read_text()
    assert EXCHANGE_SECRET not in log_text and "legacy-password" not in log_text


async def test_rollback_returns_a_bot_to_a_legacy_container_with_its_data(
    legacy_cluster, docker_client
):
    c = legacy_cluster
    h = c.harness
    event, kept = now(), await trades(h, ALICE, "leg-a1")
    code, out = await h.migrate("--rollback=leg-a1")
    assert code == 0, out
    info = await where(h, "leg-a1")
    assert (info["mode"], info["containerName"]) == ("legacy", "freqtrade-leg-a1")
    container = docker_client.containers.get("freqtrade-leg-a1")
    assert container.status == "running" and container.labels["ftpool.pool"] == info["poolId"]
    assert pooled_rows(c, info, "leg-a1") == LEGACY["leg-a1"][2]
    await reachable(h, list(TOKENS))
    assert_trades_kept(kept, await trades(h, ALICE, "leg-a1"), event)


async def test_pool_mode_off_and_on_keeps_every_bot_reachable(
    legacy_cluster, docker_client, exchange
):
    c = legacy_cluster
    h = await c.restart()  # still POOL_MODE_ENABLED=false: a new bot gets its own container
    await h.provision(ALICE, **trading_bot(exchange.url, "leg-d1"))
    everyone = [*TOKENS, "leg-d1"]
    await reachable(h, everyone)
    info = await where(h, "leg-d1")
    assert (info["mode"], info["containerName"]) == ("legacy", "freqtrade-leg-d1")
    assert docker_client.containers.get("freqtrade-leg-d1").status == "running"
    c.overrides["POOL_MODE_ENABLED"] = "true"
    h = await c.restart()
    await reachable(h, everyone)
    assert (await where(h, "leg-d1"))["mode"] == "legacy"
    created = await h.provision(ALICE, **trading_bot(exchange.url, "leg-new"))
    await reachable(h, [*everyone, "leg-new"])
    info = await where(h, "leg-new")
    assert info["mode"] == "pooled" and created["poolId"] == info["poolId"] == "pool-2"
