"""A bot whose process answers its agent's ping gets traffic at once, though supervisord
still calls it STARTING (its startsecs have not passed); one that has not answered does not,
and neither does any bot of an agent of the previous version before it is RUNNING."""

from __future__ import annotations

import pytest

from common.protocol import BotStatus
from common.states import ProcessState
from controller.health.status import serves
from tests.unit.controller.apps import ALICE, Api

STARTING, RUNNING = ProcessState.STARTING, ProcessState.RUNNING


@pytest.mark.parametrize(
    ("status", "served"),
    [
        (None, False),
        (BotStatus("b1", RUNNING, pid=7), True),
        (BotStatus("b1", RUNNING, pid=7, ping_ok=False), True),  # the monitor's to judge
        (BotStatus("b1", STARTING, pid=7, ping_ok=True), True),
        (BotStatus("b1", STARTING, pid=7, ping_ok=False), False),
        (BotStatus("b1", STARTING, pid=7), False),  # an agent of the previous version
        (BotStatus("b1", ProcessState.BACKOFF, ping_ok=True), False),
        (BotStatus("b1", ProcessState.EXITED), False),
    ],
)
def test_who_gets_traffic(status: BotStatus | None, served: bool) -> None:
    assert serves(status) is served


async def test_a_starting_bot_is_proxied_once_it_answers(api: Api) -> None:
    await api.provision(ALICE, instanceId="b1")
    live = api.controller.pools.registry.live["pool-1"]
    for ping_ok in (None, False):
        live.bots["b1"] = BotStatus("b1", STARTING, pid=7, ping_ok=ping_ok)
        status, _body, _ = await api.call("GET", "/bots/b1/api/v1/status", ALICE)
        assert status == 503  # no traffic, and no credentials, to its port yet
    live.bots["b1"] = BotStatus("b1", STARTING, pid=7, ping_ok=True, port_ok=False)
    status, body, _ = await api.call("GET", "/bots/b1/api/v1/status", ALICE)
    assert status == 503 and "port" in body["error"]  # someone else's socket answered
    live.bots["b1"] = BotStatus("b1", STARTING, pid=7, ping_ok=True)
    status, _body, _ = await api.call("GET", "/bots/b1/api/v1/status", ALICE)
    assert status == 502  # forwarded: the fake runtime started nothing that listens
