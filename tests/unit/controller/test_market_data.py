"""Pools' market-data proxies as the controller sees them: each pool's agent told its port,
and what the proxy reports shown in /api/pool/status and /metrics."""

from __future__ import annotations

from typing import Any

import pytest

from common.protocol import Heartbeat, Hello, MarketDataStats, PoolStats, UpstreamStats, encode
from common.settings import SettingsError
from tests.support import make_settings, wait_for
from tests.unit.controller.apps import ALICE, ApiFactory, connect, events_of
from tests.unit.controller.test_metrics import scrape, value


async def test_each_pool_is_told_its_own_proxy_port(make_api: ApiFactory) -> None:
    api = await make_api(
        MARKET_DATA_PROXY="true", MARKET_DATA_BASE_PORT="20999", MARKET_DATA_QUOTE_TTL="1500",
        MAX_BOTS_PER_CONTAINER="1",
    )  # fmt: skip
    for bot in ("b1", "b2"):
        await api.provision(ALICE, instanceId=bot)
    first, second = (api.runtime.launches[p].agent_env for p in ("pool-1", "pool-2"))
    assert first["MARKET_DATA_PROXY"] == "on" and first["MARKET_DATA_PORT"] == "20999"
    assert first["MARKET_DATA_QUOTE_TTL"] == "1500"
    # Pool 2's would be POOL_BASE_PORT (21000), a bot's port: it runs without a proxy.
    assert second["MARKET_DATA_PROXY"] == "off" and "MARKET_DATA_PORT" not in second


async def test_pools_run_no_proxy_when_it_is_off(make_api: ApiFactory) -> None:
    api = await make_api(MARKET_DATA_PROXY="false")
    await api.provision(ALICE, instanceId="b1")
    env = api.runtime.launches["pool-1"].agent_env
    assert env["MARKET_DATA_PROXY"] == "off" and "MARKET_DATA_PORT" not in env


def test_the_proxies_ports_must_be_below_the_bots(tmp_path) -> None:
    with pytest.raises(SettingsError, match="MARKET_DATA_BASE_PORT must be below"):
        make_settings(tmp_path, MARKET_DATA_PROXY="true", MARKET_DATA_BASE_PORT="21000")
    make_settings(tmp_path, MARKET_DATA_PROXY="false", MARKET_DATA_BASE_PORT="21000")


async def pool_agent(api: Any) -> Any:
    """pool-1, with one bot, and the WebSocket of its agent (which has its desired state)."""
    await api.provision(ALICE, instanceId="b1")
    token = api.runtime.launches["pool-1"].token
    ws = await api.client.ws_connect("/api/agents/ws")
    await ws.send_bytes(encode(Hello("pool-1", token, "t", 10, 21000)))
    await ws.receive()  # the desired state
    return ws


async def test_what_the_proxy_did_is_in_pool_status_and_metrics(make_api: ApiFactory) -> None:
    api = await make_api(MARKET_DATA_PROXY="true")
    ws = await pool_agent(api)
    md = MarketDataStats("RUNNING", 4096, 7, [
        UpstreamStats("binance", "https://api.binance.com", requests=100, hits=70,
                      coalesced=20, upstream=10, weight=30, used_weight=400),
        UpstreamStats("binance", "http://127.0.0.1:8700", requests=5, upstream=5,
                      passthrough=5, used_weight=20, backoffs=1, backoff_s=3.5),
    ])  # fmt: skip
    await ws.send_bytes(encode(Heartbeat(1, 1, [], PoolStats(), "ABSENT", md)))
    sessions, live = api.controller.pools.sessions, api.controller.pools.registry.live
    assert await sessions.wait_until(lambda: live["pool-1"].market_data is not None, 5)

    status, body, _ = await api.call("GET", "/api/pool/status")
    assert status == 200
    view = body["pools"][0]["marketData"]
    assert view["state"] == "RUNNING" and view["cache"] == {"bytes": 4096, "entries": 7}
    binance = view["exchanges"]["binance"]
    assert (binance["requests"], binance["cacheHits"], binance["coalesced"]) == (105, 70, 20)
    assert (binance["upstreamRequests"], binance["passedThrough"]) == (15, 5)
    assert (binance["usedWeight"], binance["backoffs"], binance["backoffSecondsLeft"]) == (
        400, 1, 3.5,
    )  # fmt: skip
    assert [u["origin"] for u in binance["upstreams"]] == [
        "https://api.binance.com", "http://127.0.0.1:8700",
    ]  # fmt: skip

    m = await scrape(api)
    labels = {"pool": "pool-1", "exchange": "binance"}
    assert value(m, "ftpool_market_data_requests_total", **labels) == 105
    assert value(m, "ftpool_market_data_cache_hits_total", **labels) == 70
    assert value(m, "ftpool_market_data_coalesced_total", **labels) == 20
    assert value(m, "ftpool_market_data_upstream_requests_total", **labels) == 15
    assert value(m, "ftpool_market_data_backoffs_total", **labels) == 1
    assert value(m, "ftpool_market_data_used_weight", **labels) == 400
    assert value(m, "ftpool_market_data_cache_bytes", pool="pool-1") == 4096
    await ws.close()


async def test_a_pool_without_a_proxy_shows_none(make_api: ApiFactory) -> None:
    api = await make_api()
    await api.provision(ALICE, instanceId="b1")
    status, body, _ = await api.call("GET", "/api/pool/status")
    assert status == 200 and body["pools"][0]["marketData"] is None


async def test_a_stranger_on_a_pools_proxy_port_is_an_event(make_api: ApiFactory) -> None:
    api = await make_api(MARKET_DATA_PROXY="true")
    ws = await pool_agent(api)
    sessions, live = api.controller.pools.sessions, api.controller.pools.registry.live
    for seq, holder in enumerate(["proxy", "stranger", "none", "stranger", "proxy"], start=1):
        md = MarketDataStats("RUNNING", holder=holder)
        await ws.send_bytes(encode(Heartbeat(seq, 1, [], PoolStats(), "ABSENT", md)))
        assert await sessions.wait_until(lambda s=seq: live["pool-1"].seq == s, 5)

    status, body, _ = await api.call("GET", "/api/pool/status")
    assert status == 200 and body["pools"][0]["marketData"]["portHolder"] == "proxy"

    async def one_each() -> bool:
        _status, body, _ = await api.call("GET", "/api/pool/events/history")
        kinds = [e["type"] for e in body["events"] if e["type"].startswith("market_data")]
        return kinds == ["market_data_port_taken", "market_data_port_recovered"]

    await wait_for(one_each, 5)  # events are stored by a writer of their own


async def test_an_admin_turns_one_pools_proxy_off_and_back(make_api: ApiFactory) -> None:
    api = await make_api(MARKET_DATA_PROXY="true")
    await api.provision(ALICE, instanceId="b1")
    pools, switch = api.controller.pools.registry, "/api/pool/pools/pool-1/market-data"
    assert pools.desired("pool-1").market_data is True
    status, body, _ = await api.call("PUT", switch, ALICE, json={"proxy": False})
    assert status == 403, body
    for bad in ({}, {"proxy": "off"}, {"proxy": 0}, [False]):
        status, body, _ = await api.call("PUT", switch, json=bad)
        assert status == 400 and body["success"] is False, body
    status, body, _ = await api.call("PUT", "/api/pool/pools/pool-9/market-data", json={"proxy": 1})
    assert status == 400, body
    status, body, _ = await api.call(
        "PUT", "/api/pool/pools/pool-9/market-data", json={"proxy": None}
    )
    assert status == 404, body

    gen = pools.pools["pool-1"].generation
    status, body, _ = await api.call("PUT", switch, json={"proxy": False})
    assert status == 200, body
    assert body == {"success": True, "poolId": "pool-1", "proxy": False, "override": False,
                    "generation": gen + 1}  # fmt: skip
    assert pools.desired("pool-1").market_data is False
    # Kept in the store: a controller started again on it sends the same.
    [stored] = [p for p in (await api.controller.store.load())[0] if p.id == "pool-1"]
    assert stored.market_data is False

    status, body, _ = await api.call("PUT", switch, json={"proxy": None})
    assert (status, body["proxy"], body["override"]) == (200, True, None)
    assert pools.desired("pool-1").market_data is True


async def test_without_the_setting_a_pool_has_no_proxy_to_turn_on(make_api: ApiFactory) -> None:
    api = await make_api(MARKET_DATA_PROXY="false")
    await api.provision(ALICE, instanceId="b1")
    status, body, _ = await api.call(
        "PUT", "/api/pool/pools/pool-1/market-data", json={"proxy": None}
    )
    assert (status, body["proxy"]) == (200, False)


async def test_an_agent_from_before_the_switch_is_not_switched(make_api: ApiFactory) -> None:
    api = await make_api(MARKET_DATA_PROXY="true")
    await api.provision(ALICE, instanceId="b1")
    connect(api)  # an agent connected, its hello naming no features: an older one
    live = api.controller.pools.registry.live["pool-1"]
    live.features = frozenset({"held", "backup"})
    switch = "/api/pool/pools/pool-1/market-data"
    status, body, _ = await api.call("PUT", switch, json={"proxy": False})
    assert status == 409 and "cannot switch" in body["error"], body
    assert api.controller.pools.registry.desired("pool-1").market_data is True
    live.features = frozenset({"held", "backup", "market_data_switch"})
    status, body, _ = await api.call("PUT", switch, json={"proxy": False})
    assert status == 200, body


async def test_bots_running_through_a_taken_port_are_restarted_direct_once(
    make_api: ApiFactory,
) -> None:
    """A stranger on the pool's proxy port: each bot the agent says started through the
    proxy is restarted once (its nonce), as the event `bot_restart` with its reason, and
    its restart record is not touched; nothing more once the proxy has its port back."""
    api = await make_api(MARKET_DATA_PROXY="true")
    ws = await pool_agent(api)
    for bot in ("b2", "b3"):
        await api.provision(ALICE, instanceId=bot)
    bots, sessions = api.controller.pools.registry.bots, api.controller.pools.sessions
    live = api.controller.pools.registry.live["pool-1"]

    async def heartbeat(seq: int, holder: str, routed: list[str]) -> None:
        md = MarketDataStats("BACKOFF", holder=holder, routed=routed)
        await ws.send_bytes(encode(Heartbeat(seq, 3, [], PoolStats(), "RUNNING", md)))
        assert await sessions.wait_until(lambda: live.seq == seq, 5)
        await api.controller.monitor.evaluate()

    await heartbeat(1, "proxy", ["b1", "b2"])
    assert [bots[b].nonce for b in ("b1", "b2", "b3")] == [0, 0, 0]
    await heartbeat(2, "stranger", ["b1", "b2"])  # b3 started direct
    assert [bots[b].nonce for b in ("b1", "b2", "b3")] == [1, 1, 0]
    assert bots["b1"].restarts.attempts == 0  # not counted by the restart policy
    await heartbeat(3, "stranger", ["b1"])  # b1 not restarted yet: asked once only
    assert bots["b1"].nonce == 1
    await heartbeat(4, "proxy", [])  # the port is the proxy's again: nobody moves back
    assert [bots[b].nonce for b in ("b1", "b2", "b3")] == [1, 1, 0]

    events = await events_of(api, "bot_restart", 2)
    assert {(e.bot_id, e.reason) for e in events} == {
        ("b1", "market_data_port_taken"), ("b2", "market_data_port_taken")
    }  # fmt: skip
    samples = await scrape(api)
    assert value(samples, "ftpool_bot_restarts_total", reason="market_data_port_taken") == 2


async def test_a_bot_stopped_while_another_is_rerouted_is_not_restarted(
    make_api: ApiFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The restarts off a taken port await one another: a bot its user stops meanwhile
    is judged from its record as it is then, and left stopped (its nonce untouched)."""
    api = await make_api(MARKET_DATA_PROXY="true")
    ws = await pool_agent(api)
    await api.provision(ALICE, instanceId="b2")
    bots, sessions = api.controller.pools.registry.bots, api.controller.pools.sessions
    live = api.controller.pools.registry.live["pool-1"]
    manager = api.controller.bots
    auto_restart = manager.auto_restart

    async def user_stops_b2_meanwhile(bot, restarts):  # type: ignore[no-untyped-def]
        if bot.id == "b1":
            await manager.stop(bots["b2"])
        return await auto_restart(bot, restarts)

    monkeypatch.setattr(manager, "auto_restart", user_stops_b2_meanwhile)
    md = MarketDataStats("BACKOFF", holder="stranger", routed=["b1", "b2"])
    await ws.send_bytes(encode(Heartbeat(1, 3, [], PoolStats(), "RUNNING", md)))
    assert await sessions.wait_until(lambda: live.seq == 1, 5)
    await api.controller.monitor.evaluate()
    assert (bots["b1"].nonce, bots["b2"].nonce, bots["b2"].run) == (1, 0, "stopped")
    [event] = await events_of(api, "bot_restart", 1)
    assert event.bot_id == "b1"
