"""The backup routes over a controller with a stand-in agent: who may list and restore,
what a restore asks of the agent (hold, restore, release), and a failing target's event
and metrics."""

from __future__ import annotations

import time

from common.protocol import (
    BackupState,
    Desired,
    Heartbeat,
    PoolStats,
    RestoreRequest,
    RestoreResponse,
    decode,
)
from common.states import RunState
from controller.backups.points import list_points
from tests.support import user_token, wait_for
from tests.unit.controller.apps import Api, ObedientAgent, events_of, obey
from tests.unit.controller.backups.test_points import T0, snapshot

ALICE, BOB = user_token("alice"), user_token("bob")


class RestoringAgent(ObedientAgent):
    """Applies desired states at once and answers restore requests, recording both."""

    def __init__(self, api: Api, pool_id: str, error: str = "") -> None:
        super().__init__(api, pool_id)
        self.error = error
        self.seen: list[str] = []

    async def send_bytes(self, data: bytes) -> None:
        frame = decode(data)
        if isinstance(frame, RestoreRequest):
            self.seen.append(f"restore {frame.db}@{frame.point}")
            kept = "" if self.error else f"{frame.db}.before-restore-x"
            self.api.controller.pools.sessions.response(RestoreResponse(frame.id, self.error, kept))
            return
        assert isinstance(frame, Desired)
        self.seen += [f"{b.id} {b.run}" for b in frame.bots]
        await super().send_bytes(data)


async def alices_bot(api: Api, error: str = "") -> tuple[RestoringAgent, str]:
    await api.provision(ALICE, instanceId="b1")
    obey(api, "pool-1")
    agent = RestoringAgent(api, "pool-1", error)
    live = api.controller.pools.registry.live["pool-1"]
    live.ws = agent  # type: ignore[assignment]
    live.features = frozenset({"held", "backup"})
    backups = api.controller.settings.bot_base_dir / "backups"
    point = snapshot(backups, "pool-1", "b1", time.time() + 1, 4)
    return agent, point


async def test_the_owner_lists_and_restores_and_the_bot_is_held_meanwhile(api: Api) -> None:
    agent, point = await alices_bot(api)
    status, body, _ = await api.call("GET", "/api/bots/b1/backups", ALICE)
    assert status == 200 and [p["id"] for p in body["restorePoints"]] == [point]
    assert body["restorePoints"][0]["trades"] == 4
    status, body, _ = await api.call(
        "POST", "/api/bots/b1/restore", ALICE, json={"time": "2100-01-01T00:00:00Z"}
    )
    assert status == 200, body
    assert body["restorePoint"]["id"] == point and body["keptAs"].endswith("before-restore-x")
    assert agent.seen == ["b1 held", f"restore {point}", "b1 running"]
    assert api.controller.pools.registry.bots["b1"].run == RunState.RUNNING
    assert not api.controller.pools.registry.bots["b1"].held
    assert (await events_of(api, "bot_restored", 1))[0].user_id == "alice"


async def test_points_of_a_deleted_bot_with_the_same_id_are_not_shown(api: Api) -> None:
    await alices_bot(api)
    backups = api.controller.settings.bot_base_dir / "backups"
    snapshot(backups, "pool-2", "b1", T0, 7)  # before b1 was made: an earlier bot's
    status, body, _ = await api.call("GET", "/api/bots/b1/backups", ALICE)
    assert status == 200 and [p["trades"] for p in body["restorePoints"]] == [4]


async def test_another_users_bot_is_refused(api: Api) -> None:
    agent, point = await alices_bot(api)
    assert (await api.call("GET", "/api/bots/b1/backups", BOB))[0] == 403
    body = {"restorePoint": point}
    assert (await api.call("POST", "/api/bots/b1/restore", BOB, json=body))[0] == 403
    assert agent.seen == []


async def test_bad_bodies_and_unknown_points(api: Api) -> None:
    agent, _point = await alices_bot(api)
    for body in ({}, {"restorePoint": "x"}, {"time": "soon"}):
        assert (await api.call("POST", "/api/bots/b1/restore", ALICE, json=body))[0] == 400
    before = {"time": "2000-01-01T00:00:00Z"}
    assert (await api.call("POST", "/api/bots/b1/restore", ALICE, json=before))[0] == 404
    assert agent.seen == []


async def test_a_failed_restore_still_releases_the_bot(api: Api) -> None:
    agent, point = await alices_bot(api, error="restore failed: disk full")
    body = {"restorePoint": point}
    status, answer, _ = await api.call("POST", "/api/bots/b1/restore", ALICE, json=body)
    assert status == 409 and "disk full" in answer["error"]
    assert agent.seen[-1] == "b1 running"
    assert not api.controller.pools.registry.bots["b1"].held


async def test_an_agent_without_backups_cannot_restore(api: Api) -> None:
    _agent, point = await alices_bot(api)
    api.controller.pools.registry.live["pool-1"].features = frozenset({"held"})
    body = {"restorePoint": point}
    assert (await api.call("POST", "/api/bots/b1/restore", ALICE, json=body))[0] == 409


async def test_a_failing_target_is_an_event_and_a_metric(api: Api) -> None:
    await alices_bot(api)
    sessions = api.controller.pools.sessions
    failing = BackupState(False, "No space left on device", 1, T0)
    sessions.record("pool-1", Heartbeat(1, 0, [], PoolStats(), backup=failing))
    sessions.record("pool-1", Heartbeat(2, 0, [], PoolStats(), backup=failing))  # no repeat
    (event,) = await events_of(api, "backup_failed", 1)
    assert event.pool_id == "pool-1" and event.reason == "No space left on device"
    _, _, metrics = await api.call("GET", "/metrics")
    assert "ftpool_backup_failing_pools 1.0" in metrics
    assert "ftpool_backup_failures_total 1.0" in metrics
    sessions.record("pool-1", Heartbeat(3, 0, [], PoolStats(), backup=BackupState(last_ok=T0)))
    await events_of(api, "backup_recovered", 1)
    _, _, metrics = await api.call("GET", "/metrics")
    assert "ftpool_backup_failing_pools 0.0" in metrics
    assert 'ftpool_backup_age_seconds{pool="pool-1"}' in metrics
    assert len(await events_of(api, "backup_failed", 1)) == 1


async def test_the_sweep_removes_purged_bots_backups_and_empty_pool_directories(api: Api) -> None:
    await alices_bot(api)
    root = api.controller.settings.bot_base_dir / "backups"
    snapshot(root, "pool-9", "gone", T0, 1)  # a deleted bot's, in a removed pool
    (root / "pools" / "pool-8").mkdir()  # a removed pool's, empty
    service = api.controller.backups
    assert await service.sweep() == []  # within the retention: kept
    service.purge("gone")
    # Swept by this call or by the service's own loop, which the purge wakes.
    removed = await service.sweep()
    await wait_for(lambda: sorted(p.name for p in (root / "pools").iterdir()) == ["pool-1"])
    assert removed in (["gone"], [])
    assert list_points(root, "b1")  # the living bot's stay
