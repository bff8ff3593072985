"""Fencing on the controller's side: agents are told the timeout when their pool is made,
an agent that fenced is an event and a metric, an agent from before fencing still works,
and the monitor holds a silent pool's replacement for the timeout plus the margin."""

from __future__ import annotations

from structlog.testing import capture_logs

from common.protocol import Desired, Hello, decode, encode
from tests.unit.controller.apps import ALICE, AgentSocket, Api, ApiFactory, events_of


def hello(**over: object) -> Hello:
    fields = {"pool_id": "pool-1", "token": "t", "version": "2", "capacity": 10,
              "port_start": 21000, "features": ["held", "backup", "fence"]}  # fmt: skip
    fields.update(over)
    return Hello(**fields)  # type: ignore[arg-type]


def older_agents_hello() -> Hello:
    """A hello as an agent from before fencing sends it (no `fence` feature, no `fenced`),
    decoded by this controller."""
    frame = decode(encode(hello(features=["held", "backup"])))
    assert isinstance(frame, Hello) and not frame.fenced
    return frame


async def test_agents_are_told_the_timeout_and_the_monitor_waits_it_out_with_a_margin(
    make_api: ApiFactory,
) -> None:
    api: Api = await make_api(AGENT_FENCE_TIMEOUT="30000", AGENT_FENCE_MARGIN="15000")
    await api.provision(ALICE, instanceId="a1")
    assert api.runtime.launches["pool-1"].agent_env["AGENT_FENCE_TIMEOUT"] == "30000"
    assert api.controller.monitor.rules.fence_wait == 45.0


async def test_off_by_default_on_one_host(make_api: ApiFactory) -> None:
    api: Api = await make_api()
    await api.provision(ALICE, instanceId="a1")
    assert api.runtime.launches["pool-1"].agent_env["AGENT_FENCE_TIMEOUT"] == "0"
    assert api.controller.monitor.rules.fence_wait == 0.0
    assert not api.controller.pools.sessions.fencing


async def test_an_agent_that_fenced_is_an_event_and_a_metric_and_gets_its_desired_state(
    make_api: ApiFactory,
) -> None:
    api: Api = await make_api(AGENT_FENCE_TIMEOUT="30000")
    await api.provision(ALICE, instanceId="a1")
    ws = AgentSocket()
    await api.controller.pools.sessions.attach(hello(fenced=True), ws)  # type: ignore[arg-type]
    (event,) = await events_of(api, "pool_fenced", 1)
    assert (event.pool_id, event.reason) == ("pool-1", "controller_unreachable")
    # The desired state goes out as on every connect: it starts the bots again.
    (desired,) = [decode(f) for f in ws.frames]
    assert isinstance(desired, Desired) and [b.id for b in desired.bots] == ["a1"]
    _, _, metrics = await api.call("GET", "/metrics")
    assert "ftpool_pool_fences_total 1.0" in metrics


async def test_an_agent_from_before_fencing_is_served_and_named(make_api: ApiFactory) -> None:
    api: Api = await make_api(AGENT_FENCE_TIMEOUT="30000")
    await api.provision(ALICE, instanceId="a1")
    ws = AgentSocket()
    with capture_logs() as logs:
        await api.controller.pools.sessions.attach(older_agents_hello(), ws)  # type: ignore[arg-type]
    assert [e["pool"] for e in logs if e["event"] == "agent_cannot_fence"] == ["pool-1"]
    assert isinstance(decode(ws.frames[0]), Desired)
    assert api.controller.pools.sessions.fences == 0
    _, _, metrics = await api.call("GET", "/metrics")
    assert "ftpool_pool_fences_total 0.0" in metrics


async def test_the_agents_own_fence_timeout_is_kept_after_it_is_gone(make_api: ApiFactory) -> None:
    api: Api = await make_api(AGENT_FENCE_TIMEOUT="30000")
    await api.provision(ALICE, instanceId="a1")
    sessions, ws = api.controller.pools.sessions, AgentSocket()
    await sessions.attach(hello(fence_timeout_ms=90000), ws)  # type: ignore[arg-type]
    live = api.controller.pools.registry.live["pool-1"]
    sessions.detach("pool-1", ws)  # type: ignore[arg-type]
    assert live.fence_timeout == 90.0  # what the monitor waits for (health/test_judge.py)
