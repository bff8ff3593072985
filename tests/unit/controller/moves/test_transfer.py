"""The transfer's wait for a pool's agent: nothing of the pool running counts as applied
only where the runtime confirms it."""

from __future__ import annotations

import pytest

from controller.moves import transfer
from controller.moves.transfer import StepFailed
from tests.unit.controller.apps import Api, ApiFactory


async def test_an_unreachable_pool_is_not_confirmed_stopped(
    make_api: ApiFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    api: Api = await make_api()
    await api.provision(instanceId="b1")  # pool-1, its agent not connected
    monkeypatch.setattr(transfer, "HOLD_TIMEOUT", 0.3)
    wait_applied = api.controller.transfer.wait_applied
    api.runtime.unreachable.add("pool-1")  # its node is cut off: it may run on
    with pytest.raises(StepFailed, match="did not apply"):
        await wait_applied("pool-1")
    api.runtime.unreachable.clear()
    api.runtime.exited.add("pool-1")  # confirmed ended: nor does any bot of it run
    await wait_applied("pool-1")
    api.runtime.launches.pop("pool-1")  # gone
    await wait_applied("pool-1")


class DeafAgent:
    """A connected agent that applies nothing it is sent (yet)."""

    closed = False

    async def send_bytes(self, data: bytes) -> None:
        pass

    async def close(self, **_: object) -> None:
        self.closed = True


async def test_a_fenced_hold_still_waits_for_an_agent_that_is_connected(
    make_api: ApiFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A failover's hold does not wait for a fenced agent, but one connected again has
    unfenced: its bot may run, so the hold waits until it stopped it."""
    api: Api = await make_api()
    await api.provision(instanceId="b1")
    monkeypatch.setattr(transfer, "HOLD_TIMEOUT", 0.3)
    hold, registry = api.controller.transfer.hold, api.controller.pools.registry
    registry.live["pool-1"].ws = None  # cut off, fenced: not waited for
    assert (await hold(registry.bots["b1"], fenced=True)).held
    live = registry.live["pool-1"]
    live.ws, live.features = DeafAgent(), frozenset({"held"})  # type: ignore[assignment]
    with pytest.raises(StepFailed, match="did not apply"):
        await hold(registry.bots["b1"], fenced=True)
