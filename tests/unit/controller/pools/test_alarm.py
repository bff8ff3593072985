"""The alarm: whoever sees a pool in trouble rings it, and the monitor wakes at once."""

from __future__ import annotations

import asyncio
import time

import pytest

from common.protocol import BotStatus, Heartbeat, PoolStats
from controller.pools.alarm import MAX_BOTS, Alarm, Ringing
from tests.unit.controller.apps import AgentSocket, Api, connect


async def test_a_rung_alarm_wakes_the_next_wait_at_once_and_only_that_one() -> None:
    alarm = Alarm()
    alarm.ring()
    started = time.monotonic()
    await alarm.wait(5)
    assert time.monotonic() - started < 1
    started = time.monotonic()
    await alarm.wait(0.05)  # not rung since: waits its time out
    assert time.monotonic() - started >= 0.04


async def rung(alarm: Alarm) -> bool:
    try:
        await asyncio.wait_for(alarm.wait(5), 0.5)
    except TimeoutError:
        return False
    return True


async def test_a_pool_in_trouble_rings_the_monitors_alarm(api: Api) -> None:
    await api.provision(instanceId="b1")
    pools, alarm = api.controller.pools, api.controller.monitor.alarm
    assert pools.sessions.alarm is alarm  # the same one, given to both when they were made
    connect(api)
    await pools.heartbeat("pool-1", Heartbeat(1, 1, [BotStatus("b1", "EXITED")], PoolStats()))
    assert await rung(alarm)
    pools.sessions.runtime_event("pool-1", "die")
    assert await rung(alarm)
    socket = pools.registry.live["pool-1"].ws
    assert isinstance(socket, AgentSocket)
    pools.sessions.detach("pool-1", socket)  # type: ignore[arg-type]
    assert await rung(alarm)


async def test_a_container_the_controller_replaces_itself_is_not_a_dead_pool(api: Api) -> None:
    await api.provision(instanceId="b1")
    pools = api.controller.pools
    connect(api)
    pools.lifecycle.upgrading.add("pool-1")  # a rolling upgrade recreates its container
    pools.sessions.runtime_event("pool-1", "die")
    assert pools.registry.live["pool-1"].runtime_event == ""
    assert not await rung(pools.sessions.alarm)
    pools.lifecycle.upgrading.discard("pool-1")
    pools.sessions.runtime_event("pool-1", "die")
    assert pools.registry.live["pool-1"].runtime_event == "die"


async def test_a_dead_bot_rings_for_itself_and_a_pools_trouble_for_everything() -> None:
    alarm = Alarm()
    alarm.ring_for("b1")
    alarm.ring_for("b2")
    ringing = await alarm.wait(5)
    assert ringing == Ringing(everything=False, bots=frozenset({"b1", "b2"}))
    assert ringing.bots_only
    alarm.ring_for("b1")
    alarm.ring()
    assert not (await alarm.wait(5)).bots_only  # a pool too: everything is judged
    assert await alarm.wait(0) == Ringing(everything=False)  # timed out: nothing rang
    for i in range(MAX_BOTS + 1):  # more than a targeted check is for
        alarm.ring_for(f"b{i}")
    assert (await alarm.wait(5)).everything


async def test_a_wait_cancelled_as_the_alarm_rings_stays_cancelled() -> None:
    """Python 3.11's wait_for returns the result of a wait that ended as it was cancelled:
    the monitor then ran on through the controller's shutdown, which waited for ever."""
    alarm = Alarm()
    waiting = asyncio.create_task(alarm.wait(5))
    await asyncio.sleep(0.01)
    alarm.ring()
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
