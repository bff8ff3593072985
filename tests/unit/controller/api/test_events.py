"""GET /api/pool/events (Server-Sent Events) and its JSON history, on the real app.

Also where the controller emits: agents, heartbeats, runtime events and the monitor.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from aiohttp import ClientResponse

from common.protocol import BotStatus, Heartbeat, Hello, PoolStats
from controller.api import events as events_api
from controller.records import Event
from tests.support import ADMIN_TOKEN, wait_for
from tests.unit.controller.apps import ALICE, BOB, AgentSocket, Api, ApiFactory, connect, report


async def open_stream(
    api: Api, query: str = "", token: str = ADMIN_TOKEN, **headers: str
) -> ClientResponse:
    resp = await api.client.get(
        f"/api/pool/events{query}", headers={"Authorization": f"Bearer {token}", **headers}
    )
    assert resp.status == 200, await resp.text()
    assert resp.headers["Content-Type"] == "text/event-stream"
    return resp


async def next_block(resp: ClientResponse, timeout: float = 5) -> dict[str, Any]:
    """One SSE block: its fields, `data` decoded, or {"comment": ...}."""
    raw = await asyncio.wait_for(resp.content.readuntil(b"\n\n"), timeout)
    block: dict[str, Any] = {}
    for line in raw.decode().strip("\n").split("\n"):
        name, _, value = line.partition(": ")
        block[name or "comment"] = json.loads(value) if name == "data" else value
    return block


async def stored(api: Api, count: int) -> list[Event]:
    """Wait until `count` events are in the store; returns them."""
    return await wait_for(
        lambda: _exactly(api.controller.events.recent(1000), count), timeout=5, step=0.02
    )


async def _exactly(events: Any, count: int) -> list[Event] | None:
    got = await events
    return got if len(got) == count else None


async def test_a_live_event_is_streamed_with_id_type_and_camel_case_data(api: Api) -> None:
    resp = await open_stream(api)
    api.controller.events.emit("bot_state", pool="pool-1", bot="b1", user="alice",
                               reason="RUNNING", was="STARTING")  # fmt: skip
    block = await next_block(resp)
    (event,) = await stored(api, 1)
    assert block["id"] == str(event.id)
    assert block["event"] == "bot_state"
    data = block["data"]
    assert set(data) == {"id", "type", "poolId", "instanceId", "reason", "timestamp", "detail"}
    assert (data["id"], data["poolId"], data["instanceId"], data["reason"]) == (
        event.id, "pool-1", "b1", "RUNNING",
    )  # fmt: skip
    assert data["detail"] == {"was": "STARTING"}
    assert data["timestamp"].endswith("+00:00")
    resp.close()


async def test_admin_sees_all_and_a_user_only_their_own_bots(api: Api) -> None:
    admin = await open_stream(api)
    alice = await open_stream(api, token=ALICE)
    bus = api.controller.events
    bus.emit("agent_connected", pool="pool-1")
    bus.emit("bot_state", pool="pool-1", bot="b1", user="bob", reason="RUNNING")
    bus.emit("bot_restart", pool="pool-1", bot="a1", user="alice", reason="bot_not_running")
    assert [(await next_block(admin))["event"] for _ in range(3)] == [
        "agent_connected", "bot_state", "bot_restart",
    ]  # fmt: skip
    mine = await next_block(alice)
    assert (mine["event"], mine["data"]["instanceId"]) == ("bot_restart", "a1")
    with pytest.raises(TimeoutError):
        await next_block(alice, timeout=0.3)
    status, body, _ = await api.call("GET", "/api/pool/events/history", BOB)
    assert status == 200
    assert [e["instanceId"] for e in body["events"]] == ["b1"]
    admin.close()
    alice.close()


async def test_last_event_id_replays_what_came_after_then_streams_live(api: Api) -> None:
    bus = api.controller.events
    for i in range(4):
        bus.emit("agent_connected", pool=f"pool-{i}")
    first = (await stored(api, 4))[0].id
    resp = await open_stream(api, "?since=0&history=1", **{"Last-Event-ID": str(first + 1)})
    replayed = [await next_block(resp) for _ in range(2)]
    assert [b["data"]["poolId"] for b in replayed] == ["pool-2", "pool-3"]
    bus.emit("agent_disconnected", pool="pool-3")
    live = await next_block(resp)
    assert (live["event"], live["id"]) == ("agent_disconnected", str(first + 4))
    resp.close()


async def test_history_replays_the_last_n_and_since_what_came_after(api: Api) -> None:
    bus = api.controller.events
    for i in range(5):
        bus.emit("pool_died", pool=f"pool-{i}", reason="die")
    first = (await stored(api, 5))[0].id
    resp = await open_stream(api, "?history=2")
    assert [(await next_block(resp))["data"]["poolId"] for _ in range(2)] == ["pool-3", "pool-4"]
    resp.close()
    resp = await open_stream(api, f"?since={first + 2}")
    assert [(await next_block(resp))["data"]["poolId"] for _ in range(2)] == ["pool-3", "pool-4"]
    resp.close()


async def test_a_quiet_stream_gets_keepalive_comments(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(events_api, "KEEPALIVE_SECONDS", 0.05)
    resp = await open_stream(api)
    assert await next_block(resp) == {"comment": "keepalive"}
    resp.close()


@pytest.mark.parametrize(
    ("query", "headers"),
    [
        ("?since=-1", {}),
        ("?since=abc", {}),
        ("", {"Last-Event-ID": "x"}),
        ("?history=1001", {}),
        ("?history=many", {}),
    ],
)
async def test_bad_resume_points_are_400(api: Api, query: str, headers: dict[str, str]) -> None:
    status, body, _ = await api.call("GET", f"/api/pool/events{query}", headers=headers)
    assert status == 400, body
    assert body["success"] is False


async def test_json_history_is_oldest_first_and_bounded(api: Api) -> None:
    bus = api.controller.events
    for i in range(3):
        bus.emit("pool_suspect", pool=f"pool-{i}", reason="exited", silentSeconds=i)
    first = (await stored(api, 3))[0].id
    status, body, _ = await api.call("GET", "/api/pool/events/history?limit=2")
    assert status == 200
    assert body["success"] is True
    assert [(e["poolId"], e["detail"]) for e in body["events"]] == [
        ("pool-1", {"silentSeconds": 1}), ("pool-2", {"silentSeconds": 2}),
    ]  # fmt: skip
    _, body, _ = await api.call("GET", f"/api/pool/events/history?since={first}&limit=1")
    assert [e["poolId"] for e in body["events"]] == ["pool-1"]
    status, _, _ = await api.call("GET", "/api/pool/events/history?limit=5000")
    assert status == 400


# -- where events come from ------------------------------------------------------------------


async def test_agents_heartbeats_and_runtime_events_are_events(make_api: ApiFactory) -> None:
    api: Api = await make_api()
    await api.provision(ALICE, instanceId="a1")
    pools = api.controller.pools
    ws = AgentSocket()
    await pools.sessions.attach(
        Hello(pool_id="pool-1", token="t", version="1", capacity=10, port_start=21000,
              programs=[]),
        ws,  # type: ignore[arg-type]
    )  # fmt: skip
    stats = PoolStats(mem_used=0, mem_limit=0, cpu=0.0)
    for seq, state in enumerate(("STARTING", "RUNNING", "RUNNING"), start=1):
        await pools.heartbeat("pool-1", Heartbeat(seq, 1, [BotStatus("a1", state)], stats))
    pools.sessions.detach("pool-1", ws)  # type: ignore[arg-type]
    pools.sessions.runtime_event("pool-1", "die")
    # The lost connection also woke the monitor, which found the pool suspect (once).
    events = [e for e in await stored(api, 6) if e.type != "pool_suspect"]
    assert [(e.type, e.reason, e.bot_id, e.user_id) for e in events] == [
        ("agent_connected", "", None, None),
        ("bot_state", "STARTING", "a1", "alice"),
        ("bot_state", "RUNNING", "a1", "alice"),
        ("agent_disconnected", "", None, None),
        ("pool_died", "die", None, None),
    ]
    assert events[0].detail == {"version": "1", "adopted": 0}
    assert [e.detail for e in events[1:3]] == [{"was": None}, {"was": "STARTING"}]


async def test_monitor_listeners_hear_suspect_pools_and_bot_restarts(
    make_api: ApiFactory,
) -> None:
    api: Api = await make_api()
    heard: list[Event] = []
    api.controller.monitor.add_listener(heard.append)
    await api.provision(ALICE, instanceId="a1")
    await api.controller.monitor.evaluate()  # no agent yet: the pool is suspect
    connect(api)
    report(api, "a1", "FATAL")
    await api.controller.monitor.evaluate()
    await api.controller.monitor.evaluate()
    await wait_for(lambda: len(heard) >= 3, timeout=5)
    assert [(e.type, e.reason) for e in heard[:3]] == [
        ("pool_suspect", "running"),
        ("pool_healthy", ""),
        ("bot_restart", "bot_not_running"),
    ]
    restart = heard[2]
    assert (restart.bot_id, restart.user_id, restart.detail) == ("a1", "alice", {"attempt": 1})
    assert [e.type for e in heard].count("pool_suspect") == 1
