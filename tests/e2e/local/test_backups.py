"""Backups and restore with a real trading bot (local runtime).

A real `freqtrade trade --dry-run` bot trades the DemoStrategy against the exchange
emulator; its agent backs its trade database up. The tests run in order on one cluster:
the trades reach the backup, another user can neither list nor restore it, the bot's
directory is lost and a restore brings the bot back with its trades, a backup target
that breaks is an event and a metric while the bot keeps answering, and a purge removes
the backups.
"""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

import pytest
import pytest_asyncio

from tests.e2e.local.conftest import Cluster, local_cluster
from tests.e2e.trading import assert_trades_kept, now, trades, wait_trading
from tests.exchange import trading_bot
from tests.support import user_token, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="module")]
ALICE = user_token("alice")
BOB = user_token("bob")
BOT = "alice-backed-up"
# Ports of this suite only (29000-29499 is backups' range).
PORTS = {"MARKET_DATA_BASE_PORT": "29000", "POOL_BASE_PORT": "29010"}
SEEN: dict[str, Any] = {}


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def cluster(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Cluster]:
    overrides = {"BACKUP_INTERVAL": "2000", **PORTS}
    async with local_cluster(tmp_path_factory.mktemp("backups"), overrides) as c:
        yield c


async def backed_up(h: Any, bot: str, token: str = ALICE) -> list[dict[str, Any]]:
    status, body = await h.call("GET", f"/api/bots/{bot}/backups", token)
    assert status == 200, body
    return body["restorePoints"]


async def wait_backed_up(h: Any, bot: str, count: int, after: datetime) -> dict[str, Any]:
    """The newest restore point made after `after` with at least `count` trades."""

    async def found() -> dict[str, Any] | None:
        for point in await backed_up(h, bot):
            made = datetime.fromisoformat(point["time"])
            if point["trades"] is not None and point["trades"] >= count and made >= after:
                return point
        return None

    return await wait_for(found, 60, step=0.5)


async def test_trades_reach_the_backup(cluster, exchange) -> None:
    h = cluster.harness
    await h.provision(ALICE, **trading_bot(exchange.url, BOT))
    before = (await wait_trading(h, ALICE, [BOT]))[BOT]
    SEEN["event"], SEEN["before"] = now(), before
    point = await wait_backed_up(h, BOT, len(before), SEEN["event"])
    assert point["database"] == "tradesv3.dryrun.sqlite" and point["poolId"] == "pool-1"
    SEEN["point"] = point
    # The config and strategy too, and nothing of it readable but by root.
    target = cluster.base_dir / "backups" / "pools" / "pool-1" / BOT
    assert (target / "files" / "config.json").is_file()
    assert (target / "files" / "user_data" / "strategies" / "DemoStrategy.py").is_file()
    for path in [cluster.base_dir / "backups", target, *target.rglob("*")]:
        assert path.stat().st_mode & 0o077 == 0, path


async def test_another_users_backups_are_refused(cluster) -> None:
    h = cluster.harness
    status, _ = await h.call("GET", f"/api/bots/{BOT}/backups", BOB)
    assert status == 403
    body = {"restorePoint": SEEN["point"]["id"]}
    status, _ = await h.call("POST", f"/api/bots/{BOT}/restore", BOB, json=body)
    assert status == 403
    status, body = await h.call("POST", f"/api/bots/{BOT}/restore", ALICE, json={"when": 1})
    assert status == 400, body


async def test_a_lost_bot_directory_is_restored_with_its_trades(cluster) -> None:
    h = cluster.harness
    bot_dir = h.pool_dir("pool-1") / "bots" / BOT
    shutil.rmtree(bot_dir)
    body = {"restorePoint": SEEN["point"]["id"]}
    status, restored = await h.call("POST", f"/api/bots/{BOT}/restore", ALICE, json=body)
    assert status == 200, restored
    assert restored["restorePoint"]["id"] == SEEN["point"]["id"]
    assert restored["keptAs"] is None  # there was no database left to keep
    await h.wait_running(BOT, timeout=120)
    after = await wait_for(lambda: trades_or_none(h), 120, step=1)
    assert_trades_kept(SEEN["before"], after, SEEN["event"])
    status, events = await h.call("GET", "/api/pool/events/history?limit=200", ALICE)
    assert any(e["type"] == "bot_restored" and e["instanceId"] == BOT for e in events["events"])


async def trades_or_none(h: Any, bot: str = BOT) -> dict[int, dict[str, Any]] | None:
    """The bot's trades once it answers; None until then."""
    status, _ = await h.call("GET", f"/api/bots/{bot}/ping", ALICE)
    return await trades(h, ALICE, bot) if status == 200 else None


async def test_a_broken_target_is_an_event_and_a_metric_and_the_bot_trades_on(cluster) -> None:
    h = cluster.harness
    target = cluster.base_dir / "backups" / "pools" / "pool-1" / BOT
    aside = target.with_name(f"{BOT}.aside")
    target.rename(aside)
    target.write_text("not a directory")  # the agent cannot write there any more

    async def event(kind: str) -> bool:
        _status, body = await h.call("GET", "/api/pool/events/history?limit=500")
        return any(e["type"] == kind and e["poolId"] == "pool-1" for e in body["events"])

    await wait_for(lambda: event("backup_failed"), 30, step=0.5)
    status, metrics = await h.call("GET", "/metrics")
    assert status == 200 and "ftpool_backup_failing_pools 1.0" in metrics.decode()
    status, body = await h.call("GET", f"/api/bots/{BOT}/ping", ALICE)
    assert (status, body) == (200, {"status": "pong"})
    target.unlink()
    aside.rename(target)
    await wait_for(lambda: event("backup_recovered"), 30, step=0.5)


async def test_a_purged_bot_loses_its_backups(cluster) -> None:
    h = cluster.harness
    status, body = await h.call("DELETE", f"/api/bots/{BOT}?purge=true", ALICE)
    assert status in (200, 202), body
    target = cluster.base_dir / "backups" / "pools" / "pool-1" / BOT
    await wait_for(lambda: not target.exists(), 60, step=0.5)
