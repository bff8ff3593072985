"""GET /metrics, scraped after real actions on the real app."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from common.protocol import BotStatus, Heartbeat, Hello, PoolStats, encode
from tests.unit.controller.apps import ALICE, BOB, Api, ApiFactory, connect, report, report_running


async def scrape(api: Api) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    status, _, text = await api.call("GET", "/metrics")
    assert status == 200, text
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(samples: dict, name: str, **labels: str) -> float | None:
    return samples.get((name, frozenset(labels.items())))


async def test_metrics_need_the_admin_token_unless_public(make_api: ApiFactory) -> None:
    api = await make_api()
    assert (await api.call("GET", "/metrics", token=None))[0] == 401
    assert (await api.call("GET", "/metrics", token=ALICE))[0] == 403
    public = await make_api(METRICS_PUBLIC="true")
    status, _, text = await public.call("GET", "/metrics", token=None)
    assert status == 200
    assert "ftpool_pools" in text


async def test_metrics_after_real_actions(make_api: ApiFactory) -> None:
    api = await make_api(MAX_BOTS_PER_CONTAINER="2")
    for name in ("b1", "b2", "b3"):
        await api.provision(ALICE, instanceId=name)
    await api.call("POST", "/api/bots/b2/stop", ALICE)

    # A real agent session for pool-1: hello with its token, then a heartbeat.
    token = api.runtime.launches["pool-1"].token
    ws = await api.client.ws_connect("/api/agents/ws")
    await ws.send_bytes(encode(Hello("pool-1", token, "t", 2, 21000)))
    await ws.receive()  # the desired state
    heartbeat = Heartbeat(1, 3, [BotStatus("b1", "RUNNING", pid=7, since=1.0)], PoolStats())
    await ws.send_bytes(encode(heartbeat))
    await ws.send_bytes(b"\x00not msgpack")
    sessions = api.controller.pools.sessions
    await sessions.wait_until(lambda: sessions.frames_rejected == 1, 5)
    # An agent without a valid token is refused and counted too.
    bad = await api.client.ws_connect("/api/agents/ws")
    await bad.send_bytes(encode(Hello("pool-2", "wrong", "t", 2, 21002)))
    await bad.receive()

    # Proxy: a refused call (another user's bot) and an unreachable bot.
    assert (await api.call("GET", "/api/bots/b1/status", BOB))[0] == 403
    report_running(api, "b3")
    assert (await api.call("GET", "/api/bots/b3/status", ALICE))[0] == 502

    # The monitor restarts b3, which its agent reports FATAL.
    connect(api, "pool-2")
    report(api, "b3", "FATAL")
    await api.controller.monitor.evaluate()

    m = await scrape(api)
    assert value(m, "ftpool_pools", state="running") == 2
    assert value(m, "ftpool_pools", state="suspect") == 0
    assert value(m, "ftpool_bots", status="running") == 1
    assert value(m, "ftpool_bots", status="pending") == 1  # b2: never reported
    assert value(m, "ftpool_bots", status="fatal") == 1
    assert value(m, "ftpool_slots_used") == 3
    assert value(m, "ftpool_slots_free") == 1
    assert value(m, "ftpool_agent_frames_received_total") == 2
    assert value(m, "ftpool_agent_frames_rejected_total") == 2
    assert 0 <= value(m, "ftpool_pool_heartbeat_age_seconds", pool="pool-1") < 5
    assert value(m, "ftpool_proxy_requests_total", status="4xx") == 1
    assert value(m, "ftpool_proxy_requests_total", status="5xx") == 1
    assert value(m, "ftpool_proxy_request_seconds_count") == 2
    assert value(m, "ftpool_allocation_seconds_count") == 3
    assert value(m, "ftpool_bot_restarts_total", reason="bot_not_running") == 1
    await ws.close()
    await bad.close()
