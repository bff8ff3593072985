"""The monitor's restart policy, from agents' reports, on the real app (no processes)."""

from __future__ import annotations

import time

from common.protocol import BotStatus
from tests.unit.controller.apps import Api, ApiFactory, report


class AgentSocket:
    """Stands in for a connected agent's WebSocket: takes desired-state frames."""

    closed = False

    def __init__(self) -> None:
        self.frames: list[bytes] = []

    async def send_bytes(self, data: bytes) -> None:
        self.frames.append(data)

    async def close(self, **_: object) -> None:
        self.closed = True


def connect(api: Api, pool_id: str = "pool-1") -> None:
    """Make the pool look heard from, as a connected agent's heartbeat would."""
    live = api.controller.pools.live[pool_id]
    live.ws = AgentSocket()  # type: ignore[assignment]
    live.last_seen = live.connected_at = time.time()


def nonce(api: Api, bot: str) -> int:
    return api.controller.pools.bots[bot].nonce


async def test_a_transient_exit_is_left_to_supervisord(make_api: ApiFactory) -> None:
    api: Api = await make_api()
    await api.provision(instanceId="b1")
    connect(api)
    report(api, "b1", "EXITED", since=100.0)
    await api.controller.monitor.evaluate()
    assert nonce(api, "b1") == 0  # supervisord restarts an exited bot by itself
    await api.controller.monitor.evaluate()
    assert nonce(api, "b1") == 1  # still the same exit one evaluation later: restart it


async def test_fatal_is_restarted_at_most_max_attempts_then_cools_down(
    make_api: ApiFactory,
) -> None:
    api: Api = await make_api(MAX_RESTART_ATTEMPTS="2", RESTART_COOLDOWN="600000")
    await api.provision(instanceId="b1")
    connect(api)
    for expected in (1, 2, 2, 2):
        report(api, "b1", "FATAL")
        report_ = await api.controller.monitor.evaluate()
        assert nonce(api, "b1") == expected
    assert any(i["type"] == "restart_cooldown" for i in report_.issues)


async def test_a_users_stop_is_never_undone(make_api: ApiFactory) -> None:
    api: Api = await make_api()
    await api.provision(instanceId="b1")
    connect(api)
    assert (await api.call("POST", "/api/bots/b1/stop"))[0] == 200
    api.controller.pools.live["pool-1"].bots["b1"] = BotStatus("b1", "STOPPED", since=5.0)
    for _ in range(3):
        await api.controller.monitor.evaluate()
    bot = api.controller.pools.bots["b1"]
    assert (bot.run, bot.nonce) == ("stopped", 0)
