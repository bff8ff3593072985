"""What the runtime's word about a pool's container means (controller/pools/sessions.py)."""

from __future__ import annotations

import asyncio

import pytest

from common.protocol import LogRequest, LogResponse
from controller.errors import BotUnavailable
from controller.events import EventBus
from controller.pools.sessions import runtime_event_effect
from tests.support import wait_for
from tests.unit.controller.apps import Api, connect


@pytest.mark.parametrize(
    ("action", "replacing", "effect"),
    [
        ("die", False, "died"),
        ("destroy", False, "died"),
        ("oom", False, "oom"),  # one process killed for memory: the container lives
        ("oom", True, "oom"),
        ("kill", False, None),  # a signal sent: a die follows if it was fatal
        ("die", True, None),  # a rolling upgrade replacing the container
        ("destroy", True, None),
        ("restart", False, None),
    ],
)
def test_what_a_runtime_event_means(action: str, replacing: bool, effect: str | None) -> None:
    assert runtime_event_effect(action, replacing) == effect


async def emitted(bus: EventBus) -> list[str]:
    """The types of the events emitted so far, once they are stored (a marker last)."""
    bus.emit("marker")

    async def stored() -> list[str] | None:
        types = [e.type for e in await bus.recent(100)]
        return types if "marker" in types else None

    return await wait_for(stored, timeout=5, step=0.02)


async def test_an_oom_is_told_but_leaves_the_pool_heard_from(api: Api) -> None:
    await api.provision(instanceId="b1")
    sessions = api.controller.pools.sessions
    connect(api)
    sessions.runtime_event("pool-1", "oom")
    sessions.runtime_event("pool-1", "kill")
    assert not sessions.is_suspect("pool-1")
    sessions.runtime_event("pool-1", "die")
    assert sessions.is_suspect("pool-1")
    types = await emitted(api.controller.events)
    assert types.count("pool_oom") == 1 and types.count("pool_died") == 1


async def test_a_container_the_upgrade_replaces_is_not_a_death(api: Api) -> None:
    await api.provision(instanceId="b1")
    pools = api.controller.pools
    connect(api)
    pools.lifecycle.upgrading.add("pool-1")
    pools.sessions.runtime_event("pool-1", "die")
    pools.sessions.runtime_event("pool-1", "destroy")
    assert not pools.sessions.is_suspect("pool-1")
    assert "pool_died" not in await emitted(pools.events)


async def test_desired_state_is_applied_once_the_agent_reports_its_generation(api: Api) -> None:
    await api.provision(instanceId="b1")
    registry = api.controller.pools.registry
    connect(api)
    generation = registry.pools["pool-1"].generation
    registry.live["pool-1"].acked_gen = generation - 1
    assert not registry.desired_applied("pool-1")
    registry.live["pool-1"].acked_gen = generation
    assert registry.desired_applied("pool-1")
    assert registry.desired_applied("pool-404")  # nothing to wait for


async def test_a_request_fails_at_once_when_its_agent_disconnects(api: Api) -> None:
    """Its answer can no longer come: not waited for until its timeout (a transfer's 15
    min, with the moves' lock held); a request on a newer connection is not touched."""
    await api.provision(instanceId="b1")
    sessions = api.controller.pools.sessions
    connect(api)
    old = sessions.registry.live["pool-1"].ws
    frame = LogRequest(sessions.next_request_id(), "b1", 100)
    asked = asyncio.create_task(sessions.request("pool-1", frame, timeout=900))
    await wait_for(lambda: old.frames or None, timeout=5, step=0.01)  # type: ignore[union-attr]
    connect(api)  # the agent is back on a new connection before the old one ended
    new = sessions.registry.live["pool-1"].ws
    again = LogRequest(sessions.next_request_id(), "b1", 100)
    kept = asyncio.create_task(sessions.request("pool-1", again, timeout=900))
    await wait_for(lambda: new.frames or None, timeout=5, step=0.01)  # type: ignore[union-attr]
    sessions.detach("pool-1", old)  # type: ignore[arg-type]
    with pytest.raises(BotUnavailable, match="disconnected before it answered"):
        await asyncio.wait_for(asked, 5)
    assert not kept.done()
    sessions.response(LogResponse(again.id, data=b"tail"))
    assert (await asyncio.wait_for(kept, 5)).data == b"tail"


def test_a_failover_waits_for_a_move_longer_than_its_longest_step() -> None:
    """A failover waiting for the moves' lock gave up (600 s) before one transfer of the
    move holding it could (900 s)."""
    from controller.moves.agent_files import TRANSFER_TIMEOUT
    from controller.moves.guard import LOCK_WAIT
    from controller.moves.transfer import AGENT_TIMEOUT, HOLD_TIMEOUT

    assert max(TRANSFER_TIMEOUT, AGENT_TIMEOUT, HOLD_TIMEOUT) < LOCK_WAIT
