"""CPU limits with real processes (local runtime, real supervisord and agents, fake bots;
ports 33300-33307): a bot's own limits.cpu, a user's CPU quota under concurrent provisions,
and the busy state of a spinning bot as the API, events and metrics show it.
"""

from __future__ import annotations

import asyncio

import pytest

from tests.support import user_token, wait_for

pytestmark = pytest.mark.integration

ALICE = user_token("alice")


async def test_cpu_limits_quotas_and_a_spinning_bots_busy_state(harness_factory):
    h = await harness_factory(
        POOL_BASE_PORT="33300", MAX_BOTS_PER_CONTAINER="4", BOT_CPU_LIMIT="0.5",
        USER_MAX_CPU="1", BOT_BUSY_CPU="50", BOT_BUSY_WINDOW="2000",
    )  # fmt: skip
    # A quota of 1 CPU and the default of 0.5 each: two of five concurrent provisions pass.
    answers = await asyncio.gather(*(
        h.call("POST", "/api/bots", ALICE, json={"instanceId": f"c-{i}"}) for i in range(5)
    ))  # fmt: skip
    assert sorted(status for status, _ in answers) == [201, 201, 403, 403, 403]
    refused = next(body for status, body in answers if status == 403)
    assert refused["quota"] == {"maxCpu": 1.0, "cpu": 1.0, "needCpu": 0.5}, refused
    placed = [body["instanceId"] for status, body in answers if status == 201]
    # Her own quota raised by the admin: a bot with a smaller limit of its own fits.
    await h.call("PUT", "/api/users/alice/quota", json={"maxCpu": 1.25})
    small = {"instanceId": "c-small", "limits": {"cpu": 0.25}}
    status, body = await h.call("POST", "/api/bots", ALICE, json=small)
    assert status == 201 and body["limits"]["cpu"] == 0.25, body
    over = {"instanceId": "c-over", "limits": {"cpu": 0.1}}
    status, body = await h.call("POST", "/api/bots", ALICE, json=over)
    assert status == 403 and body["quota"]["cpu"] == 1.25, body
    # The admin's own bot, with a limit above the default: no quota, no cap on the value.
    await h.provision(instanceId="spinner", limits={"cpu": 0.75})
    running = [*placed, "c-small", "spinner"]
    await asyncio.gather(*(h.wait_running(b) for b in running))

    status, mine = await h.call("GET", "/api/bots", ALICE)
    views = {b["instanceId"]: b for b in mine["bots"]}
    assert sorted(views) == sorted([*placed, "c-small"])
    small = views["c-small"]
    # The local runtime gives bots no cgroups: the limit is held by the busy rule.
    assert small["limits"] == {"memoryBytes": None, "own": False, "cpu": 0.25,
                               "cpuOwn": True, "cpuEnforcement": "priority"}  # fmt: skip
    assert small["usage"]["cpu"]["limitPercent"] == 25.0
    assert small["usage"]["cpu"]["percent"] is not None
    assert small["busy"] == {"deprioritised": False, "since": None, "policy": "idle"}
    status, quota = await h.call("GET", "/api/users/alice/quota", ALICE)
    assert (quota["maxCpu"], quota["cpu"], quota["ownCpu"]) == (1.25, 1.25, 1.25)

    # A thread of the spinner in a busy loop: deprioritised within its window, said so.
    pid = (await h.bot("spinner"))["process"]["pid"]
    (h.pool_dir("pool-1") / "bots" / "spinner" / "spin-cpu").touch()
    assert (await h.call("POST", "/api/bots/spinner/restart"))[0] == 200

    async def deprioritised() -> dict | None:
        info = await h.bot("spinner")
        fresh = (info["process"] or {}).get("pid") not in (None, pid)
        return info if fresh and info["busy"]["deprioritised"] else None

    info = await wait_for(deprioritised, 60)
    assert info["busy"]["policy"] == "idle" and info["busy"]["since"] > 0
    assert info["process"]["nice"] == 19
    assert info["limits"]["cpu"] == 0.75 and info["usage"]["cpu"]["limitPercent"] == 75.0
    status, located = await h.call("GET", "/api/pool/bot/spinner")
    assert status == 200 and located["busy"]["deprioritised"] is True
    assert located["limits"]["cpu"] == 0.75
    status, pools = await h.call("GET", "/api/pool/status")
    limits = pools["pools"][0]["limits"]
    assert (limits["busyPolicy"], limits["deprioritised"]) == ("idle", ["spinner"])
    assert limits["botCpuLimits"] == 2.0  # 0.5 + 0.5 + 0.25 + 0.75

    async def evented() -> list | None:
        _status, body = await h.call("GET", "/api/pool/events/history?limit=1000")
        found = [e for e in body["events"] if e["type"] == "bot_deprioritised"]
        return found or None

    [event] = await wait_for(evented, 10)
    assert event["instanceId"] == "spinner" and event["detail"]["policy"] == "idle"
    metrics = (await h.call("GET", "/metrics"))[1].decode()
    assert 'ftpool_bots_deprioritised{policy="idle"} 1.0' in metrics
    assert "ftpool_bot_deprioritisations_total 1.0" in metrics
    # Its neighbours are not touched.
    for bot in placed:
        neighbour = await h.bot(bot)
        assert neighbour["busy"]["deprioritised"] is False and neighbour["process"]["nice"] < 19
