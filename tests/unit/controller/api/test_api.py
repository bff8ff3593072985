"""The controller's HTTP API on the real app, with a runtime that runs nothing.

Each test builds the real application (store, managers, middlewares, routes) through
controller.app.build and create_app; only the pool runtime is a recording fake that
reports every pool RUNNING, so no process is ever started.
"""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any

import pytest

from controller.app import persistent_secret
from controller.bots import manager as bots_module
from controller.errors import StoreError
from tests.support import ADMIN_TOKEN, JWT_SECRET, user_token
from tests.unit.controller.apps import ALICE, BOB, Api, ApiFactory, report, report_running


def assert_error(status: int, body: Any, expected: int) -> None:
    assert status == expected, body
    assert isinstance(body, dict), body
    assert body["success"] is False
    assert isinstance(body["error"], str) and body["error"]


# -- public and unauthenticated -------------------------------------------------------------


async def test_healthz_is_public(api: Api) -> None:
    status, body, _ = await api.call("GET", "/healthz", token=None)
    assert status == 200
    assert body["status"] == "ok"
    assert body["pools"] == 0


PROTECTED = [
    ("GET", "/api/bots"),
    ("POST", "/api/bots"),
    ("POST", "/api/provision-enhanced"),
    ("GET", "/api/bots/b1"),
    ("DELETE", "/api/bots/b1"),
    ("POST", "/api/bots/b1/start"),
    ("POST", "/api/bots/b1/stop"),
    ("POST", "/api/bots/b1/restart"),
    ("GET", "/api/bots/b1/status"),
    ("GET", "/bots/b1/api/v1/status"),
    ("GET", "/api/pool/status"),
    ("POST", "/api/pool/health-check"),
    ("POST", "/api/pool/cleanup"),
    ("GET", "/api/pool/bot/b1"),
    ("GET", "/api/pool/bot/b1/log"),
    ("GET", "/api/agents"),
    ("PUT", "/api/pool/pools/pool-1/launch"),
    ("PUT", "/api/pool/pools/pool-1/market-data"),
    ("POST", "/api/pool/pools/pool-1/preloader/restart"),
    ("GET", "/api/pool/events"),
    ("GET", "/api/pool/events/history"),
]


async def test_a_401_says_how_to_authenticate(api: Api) -> None:
    # Found reviewing the fuzz run's answers (RFC 9110 11.6.1): a 401 had no challenge.
    for path in ("/api/bots", "/bots/b1/api/v1/ping", "/api/no-such-route"):
        async with api.client.get(path) as r:
            assert r.status == 401
            assert r.headers["WWW-Authenticate"] == 'Bearer realm="ftpool"'


async def test_a_405_names_the_methods_the_route_has(api: Api) -> None:
    # Found reviewing the fuzz run's answers (RFC 9110 15.5.6): a 405 had no Allow header.
    auth = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    for method, path, allowed in (
        ("PATCH", "/healthz", {"GET", "HEAD"}),
        ("PUT", "/api/bots", {"GET", "HEAD", "POST"}),
        ("POST", "/api/openapi.json", {"GET", "HEAD"}),
    ):
        async with api.client.request(method, path, headers=auth) as r:
            assert r.status == 405
            assert set(r.headers["Allow"].split(",")) == allowed
            assert (await r.json())["success"] is False


@pytest.mark.parametrize(("method", "path"), PROTECTED)
async def test_401_without_or_with_an_invalid_token(api: Api, method: str, path: str) -> None:
    await api.provision(instanceId="b1")
    status, body, _ = await api.call(method, path, token=None)
    assert_error(status, body, 401)
    for bad in ("garbage", user_token("alice", exp=1), ADMIN_TOKEN + "x"):
        status, body, _ = await api.call(method, path, token=bad)
        assert_error(status, body, 401)
    status, body, _ = await api.call(method, path, token=None, headers={"Authorization": "Basic x"})
    assert_error(status, body, 401)
    # Nothing changed on the way.
    bot = api.controller.pools.registry.bots["b1"]
    assert (bot.run, bot.nonce, bot.deleting) == ("running", 0, False)


# -- admin only ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/api/pool/status"),
        ("POST", "/api/pool/health-check"),
        ("POST", "/api/pool/cleanup"),
        ("GET", "/api/agents"),
    ],
)
async def test_403_for_a_user_on_admin_endpoints(api: Api, method: str, path: str) -> None:
    status, body, _ = await api.call(method, path, ALICE)
    assert_error(status, body, 403)
    status, _, _ = await api.call(method, path, ADMIN_TOKEN)
    assert status == 200


OTHERS_BOT = [
    ("GET", "/api/bots/{id}"),
    ("POST", "/api/bots/{id}/start"),
    ("POST", "/api/bots/{id}/stop"),
    ("POST", "/api/bots/{id}/restart"),
    ("DELETE", "/api/bots/{id}"),
    ("DELETE", "/api/bots/{id}?purge=true"),
    ("GET", "/api/bots/{id}/status"),
    ("POST", "/api/bots/{id}/forcebuy"),
    ("GET", "/bots/{id}/api/v1/status"),
    ("GET", "/bots/{id}/api/v1/message/ws"),
    ("GET", "/api/pool/bot/{id}"),
    ("GET", "/api/pool/bot/{id}/log"),
]


@pytest.mark.parametrize(("method", "path"), OTHERS_BOT)
async def test_403_on_another_users_bot(api: Api, method: str, path: str) -> None:
    bot_id = (await api.provision(ALICE, instanceId="alices-bot"))["instanceId"]
    status, body, _ = await api.call(method, path.format(id=bot_id), BOB)
    assert_error(status, body, 403)
    bot = api.controller.pools.registry.bots[bot_id]
    assert (bot.run, bot.nonce, bot.deleting) == ("running", 0, False)


async def test_403_on_another_users_bot_with_basic_auth(api: Api) -> None:
    import base64

    await api.provision(ALICE, instanceId="alices-bot")
    creds = base64.b64encode(f"bob:{BOB}".encode()).decode()
    status, body, _ = await api.call(
        "GET", "/bots/alices-bot/api/v1/status", None, headers={"Authorization": f"Basic {creds}"}
    )
    assert_error(status, body, 403)
    status, body, _ = await api.call(
        "POST", "/bots/alices-bot/api/v1/token/login", None,
        headers={"Authorization": f"Basic {creds}"},
    )  # fmt: skip
    assert_error(status, body, 403)


async def test_freqtrade_login_gives_controller_tokens(api: Api) -> None:
    import base64

    await api.provision(ALICE, instanceId="b1")
    creds = base64.b64encode(f"alice:{ALICE}".encode()).decode()
    status, body, _ = await api.call(
        "POST", "/bots/b1/api/v1/token/login", None, headers={"Authorization": f"Basic {creds}"}
    )
    assert status == 200, body
    access, refresh = body["access_token"], body["refresh_token"]
    assert api.controller.auth.bearer(access).user_id == "alice"
    status, body, _ = await api.call("POST", "/bots/b1/api/v1/token/refresh", refresh)
    assert status == 200, body
    assert api.controller.auth.bearer(body["access_token"]).user_id == "alice"
    # The access token is no refresh token, and the refresh token opens no bot.
    status, body, _ = await api.call("POST", "/bots/b1/api/v1/token/refresh", access)
    assert_error(status, body, 401)
    status, body, _ = await api.call("GET", "/api/bots/b1", refresh)
    assert_error(status, body, 401)
    # A token that login issued does not log in again: access is not renewable forever.
    renewed = base64.b64encode(f"alice:{access}".encode()).decode()
    status, body, _ = await api.call(
        "POST", "/bots/b1/api/v1/token/login", None, headers={"Authorization": f"Basic {renewed}"}
    )
    assert_error(status, body, 401)


async def test_a_bot_whose_port_another_user_holds_is_not_proxied(api: Api) -> None:
    await api.provision(ALICE, instanceId="b1")
    report_running(api, "b1")
    api.controller.pools.registry.live["pool-1"].bots["b1"].port_ok = False
    status, body, _ = await api.call("GET", "/bots/b1/api/v1/show_config", ALICE)
    assert_error(status, body, 503)
    assert "port" in body["error"]


async def test_the_bots_own_token_endpoints_are_never_proxied(api: Api) -> None:
    await api.provision(ALICE, instanceId="b1")
    report_running(api, "b1")
    for path in ("/api/bots/b1/token/login", "/api/bots/b1/token/refresh"):
        status, body, _ = await api.call("POST", path, ALICE)
        assert_error(status, body, 404)


async def test_a_short_secret_file_stops_start_up(tmp_path: Path) -> None:
    (tmp_path / "admin-token").write_text("\n")
    with pytest.raises(StoreError, match="admin-token"):
        persistent_secret("", tmp_path / "admin-token")


# -- validation ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        (b"{not json", "JSON"),
        (b'{"instanceId": "a",}', "JSON"),
        (b"\xff\xfe", "JSON"),
        (b"[1, 2]", "object"),
        (b'"text"', "object"),
        (b'{"instanceId": "ok", "image": "x"}', "unknown"),
        (b'{"instanceId": "../x"}', "instanceId"),
        (b'{"instanceId": "a b"}', "instanceId"),
        (b'{"instanceId": "x\\n[program:evil]"}', "instanceId"),
        (b'{"instanceId": 12}', "instanceId"),
        (b'{"instanceId": ""}', "instanceId"),
        (b'{"strategy": "../Evil"}', "strategy"),
        (b'{"strategy": "Evil.py"}', "strategy"),
        (b'{"strategy": "NoSuchStrategy"}', "strategy"),
        (b'{"strategy": 5}', "strategy"),
        (b'{"config": {"api_server": {"listen_port": 1}}}', "api_server"),
        (b'{"config": {"db_url": "sqlite:////etc/x"}}', "db_url"),
        (b'{"config": {"strategy_path": "/tmp"}}', "strategy_path"),
        (b'{"config": {"user_data_dir": "/"}}', "user_data_dir"),
        (b'{"config": [1]}', "config"),
        (b'{"config": ' + b'{"a":' * 50 + b"1" + b"}" * 50 + b"}", "deeper"),
        (b"[" * 100_000 + b"]" * 100_000, ""),
    ],
    ids=lambda v: v[:40] if isinstance(v, bytes) else v,
)
async def test_400_for_bad_provision_requests(api: Api, body: bytes, fragment: str) -> None:
    for path in ("/api/bots", "/api/provision-enhanced"):
        status, data, _ = await api.call(
            "POST", path, data=body, headers={"Content-Type": "application/json"}
        )
        assert_error(status, data, 400)
        assert fragment in data["error"]
    assert api.controller.pools.registry.bots == {}
    assert api.runtime.launches == {}


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/api/bots/a%20b"),
        ("GET", "/api/bots/-x"),
        ("POST", "/api/bots/a%0Ab/start"),
        ("DELETE", "/api/bots/.hidden"),
        ("GET", "/api/pool/bot/a%20b"),
        ("GET", "/api/bots/b1/a%2F..%2F..%2Fadmin"),
        ("GET", "/bots/b1/api/v1/a%2F..%2F..%2Fx"),
        ("DELETE", "/api/bots/b1?purge=maybe"),
        ("GET", "/api/pool/bot/b1/log?bytes=lots"),
        ("GET", "/api/pool/bot/b1/log?bytes=0"),
    ],
)
async def test_400_for_bad_ids_and_parameters(api: Api, method: str, path: str) -> None:
    await api.provision(instanceId="b1")
    status, body, _ = await api.call(method, path)
    assert_error(status, body, 400)


async def test_413_for_a_body_over_the_limit(make_api: ApiFactory) -> None:
    api = await make_api(MAX_BODY_BYTES="2048")
    big = json.dumps({"instanceId": "big", "config": {"x": "y" * 4096}}).encode()
    status, body, _ = await api.call(
        "POST", "/api/bots", data=big, headers={"Content-Type": "application/json"}
    )
    assert_error(status, body, 413)
    assert "big" not in api.controller.pools.registry.bots
    # The proxy refuses as well, before it connects to the bot.
    await api.provision(instanceId="b1")
    report_running(api, "b1")
    status, body, _ = await api.call("POST", "/api/bots/b1/forcebuy", data=b"x" * 4096)
    assert_error(status, body, 413)


async def test_409_for_a_duplicate_instance_id(api: Api) -> None:
    await api.provision(ALICE, instanceId="dup")
    for token in (ALICE, BOB, ADMIN_TOKEN):
        status, body, _ = await api.call("POST", "/api/bots", token, json={"instanceId": "dup"})
        assert_error(status, body, 409)
    assert len(api.controller.pools.registry.bots) == 1
    assert api.controller.pools.registry.bots["dup"].user_id == "alice"


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/api/bots/nobody"),
        ("POST", "/api/bots/nobody/start"),
        ("POST", "/api/bots/nobody/stop"),
        ("POST", "/api/bots/nobody/restart"),
        ("DELETE", "/api/bots/nobody"),
        ("GET", "/api/bots/nobody/status"),
        ("GET", "/bots/nobody/api/v1/status"),
        ("GET", "/api/pool/bot/nobody"),
    ],
)
async def test_404_for_an_unknown_bot(api: Api, method: str, path: str) -> None:
    for token in (ADMIN_TOKEN, ALICE):
        status, body, _ = await api.call(method, path, token)
        assert_error(status, body, 404)


# -- provisioning and views ----------------------------------------------------------------


async def test_provision_response_shape(api: Api) -> None:
    status, body, _ = await api.call(
        "POST", "/api/bots", ALICE, json={"instanceId": "b1", "strategy": "SampleStrategy",
                                         "config": {"max_open_trades": 1}},
    )  # fmt: skip
    assert status == 201
    assert body == {
        "success": True, "instanceId": "b1", "poolId": "pool-1", "port": 21000,
        "status": "pending", "limits": {"memoryBytes": None, "cpu": None},
    }  # fmt: skip
    bot = api.controller.pools.registry.bots["b1"]
    assert bot.user_id == "alice"
    assert bot.config == {"max_open_trades": 1}
    assert api.runtime.calls.count(("create", "pool-1")) == 1
    launch = api.runtime.launches["pool-1"]
    assert (launch.capacity, launch.port_start) == (10, 21000)


async def test_provision_without_a_body_generates_an_id(api: Api) -> None:
    status, body, _ = await api.call("POST", "/api/provision-enhanced", ALICE)
    assert status == 201, body
    assert body["instanceId"].startswith("alice-bot-")
    assert api.controller.pools.registry.bots[body["instanceId"]].strategy == "SampleStrategy"


async def test_a_null_body_is_refused_not_taken_for_no_body(api: Api) -> None:
    # Found by the OpenAPI fuzz run: a body `null` provisioned a default bot.
    json_null = {"data": "null", "headers": {"Content-Type": "application/json"}}
    for path in ("/api/bots", "/api/provision-enhanced"):
        status, body, _ = await api.call("POST", path, ALICE, **json_null)
        assert_error(status, body, 400)
    assert api.controller.pools.registry.bots == {}
    status, body, _ = await api.call("POST", "/api/pool/migration/bots/b1", **json_null)
    assert_error(status, body, 400)


async def test_bots_fill_one_pool_before_the_next(api: Api) -> None:
    ports = [(await api.provision(instanceId=f"b{i}"))["port"] for i in range(11)]
    assert ports == list(range(21000, 21011))
    assert [c for c in api.runtime.calls if c[0] == "create"] == [
        ("create", "pool-1"),
        ("create", "pool-2"),
    ]


async def test_unpooled_mode_gives_each_bot_a_pool(make_api: ApiFactory) -> None:
    api = await make_api(POOL_MODE_ENABLED="false")
    a = await api.provision(instanceId="a")
    b = await api.provision(instanceId="b")
    assert (a["poolId"], b["poolId"]) == ("pool-1", "pool-2")
    status, body, _ = await api.call("GET", "/api/pool/bot/a")
    assert status == 200
    assert body["isPooled"] is False
    assert body["mode"] == "legacy"


async def test_users_see_only_their_own_bots(api: Api) -> None:
    await api.provision(ALICE, instanceId="a1")
    await api.provision(ALICE, instanceId="a2")
    await api.provision(BOB, instanceId="b1")
    await api.provision(ADMIN_TOKEN, instanceId="admins")

    async def listed(token: str) -> list[str]:
        status, body, _ = await api.call("GET", "/api/bots", token)
        assert status == 200
        return [b["instanceId"] for b in body["bots"]]

    assert await listed(ALICE) == ["a1", "a2"]
    assert await listed(BOB) == ["b1"]
    assert await listed(user_token("carol")) == []
    assert sorted(await listed(ADMIN_TOKEN)) == ["a1", "a2", "admins", "b1"]
    status, body, _ = await api.call("GET", "/api/bots/a1", ALICE)
    assert status == 200
    assert (body["instanceId"], body["userId"], body["desired"]) == ("a1", "alice", "running")
    # The admin may look at anyone's bot.
    status, _, _ = await api.call("GET", "/api/bots/b1", ADMIN_TOKEN)
    assert status == 200


async def test_pool_bot_info(api: Api) -> None:
    await api.provision(ALICE, instanceId="b1")
    status, body, _ = await api.call("GET", "/api/pool/bot/b1", ALICE)
    assert status == 200
    assert body["isPooled"] is True
    assert body["poolId"] == "pool-1"
    assert body["containerName"] == "freqtrade-pool-pool-1"
    assert body["connection"] == {
        "host": "127.0.0.1", "port": 21000, "url": "http://127.0.0.1:21000"
    }  # fmt: skip


async def test_pool_status(api: Api) -> None:
    await api.provision(instanceId="b1")
    await api.provision(instanceId="b2")
    status, body, _ = await api.call("GET", "/api/pool/status")
    assert status == 200
    assert body["totalPools"] == 1
    assert body["totalBots"] == 2
    [pool] = body["pools"]
    assert pool["id"] == "pool-1"
    assert pool["bots"] == ["b1", "b2"]
    assert pool["ports"] == {"start": 21000, "end": 21009}
    assert pool["utilizationPercent"] == 20
    assert pool["node"] == socket.gethostname()  # the local runtimes' pools run here


async def test_pool_status_estimates_the_memory_saved(make_api: ApiFactory) -> None:
    api = await make_api(LEGACY_CONTAINER_MEMORY="100m")
    for bot in ("b1", "b2", "b3"):
        await api.provision(instanceId=bot)
    report_running(api, "b1")
    report_running(api, "b2")
    report(api, "b3", "STOPPED")
    _, body, _ = await api.call("GET", "/api/pool/status")
    [pool] = body["pools"]
    # The fake runtime accounts 1 MiB for the pool: two running bots in containers of
    # their own would take 200 MiB.
    assert pool["runningBots"] == 2
    assert pool["memory"]["savedBytes"] == 199 << 20
    assert body["memorySaved"] == {
        "legacyContainerBytes": 100 << 20, "runningBots": 2, "poolsBytes": 1 << 20,
        "legacyBytes": 200 << 20, "savedBytes": 199 << 20, "savedPercent": 99.5,
    }  # fmt: skip


async def test_no_saving_estimated_without_a_legacy_figure(make_api: ApiFactory) -> None:
    off = await make_api(LEGACY_CONTAINER_MEMORY="0")
    await off.provision(instanceId="b1")
    _, body, _ = await off.call("GET", "/api/pool/status")
    assert body["pools"][0]["memory"]["savedBytes"] is None
    assert body["memorySaved"]["savedBytes"] is None


async def test_a_pools_launch_mode_and_preloader_restart(make_api: ApiFactory) -> None:
    api = await make_api(BOT_LAUNCH="preload")
    await api.provision(ALICE, instanceId="b1")
    pools = api.controller.pools.registry
    launch = "/api/pool/pools/pool-1/launch"
    restart = "/api/pool/pools/pool-1/preloader/restart"
    for method, path in (("PUT", launch), ("POST", restart)):
        status, body, _ = await api.call(method, path, ALICE, json={"launch": "exec"})
        assert_error(status, body, 403)
    for bad in ({}, {"launch": "fork"}, ["exec"], {"launch": 1}):
        status, body, _ = await api.call("PUT", launch, json=bad)
        assert_error(status, body, 400)
    status, body, _ = await api.call("PUT", "/api/pool/pools/pool-9/launch", json={"launch": None})
    assert_error(status, body, 404)
    assert pools.desired("pool-1").launch == "preload"

    status, body, _ = await api.call("POST", restart)
    assert (status, body["preloaderRestarts"]) == (200, 1)
    assert pools.desired("pool-1").preloader_nonce == 1

    gen = pools.pools["pool-1"].generation
    status, body, _ = await api.call("PUT", launch, json={"launch": "exec"})
    assert status == 200
    assert (body["launch"], body["override"], body["generation"]) == ("exec", "exec", gen + 1)
    assert pools.desired("pool-1").launch == "exec"
    status, body, _ = await api.call("POST", restart)
    assert_error(status, body, 409)  # an exec pool has no preloader to restart
    [view] = (await api.call("GET", "/api/pool/status"))[1]["pools"]
    assert view["launch"] == {
        "mode": "exec", "override": "exec", "preloader": "ABSENT", "preloaderRestarts": 1,
    }  # fmt: skip

    status, body, _ = await api.call("PUT", launch, json={"launch": None})
    assert (status, body["launch"], body["override"]) == (200, "preload", None)


async def test_lifecycle_writes_desired_state(api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    await api.provision(ALICE, instanceId="b1")
    pools = api.controller.pools.registry
    gen = pools.pools["pool-1"].generation

    status, body, _ = await api.call("POST", "/api/bots/b1/stop", ALICE)
    assert (status, body["desired"], body["action"]) == (200, "stopped", "stop")
    assert pools.bots["b1"].run == "stopped"
    status, body, _ = await api.call("POST", "/api/bots/b1/start", ALICE)
    assert (status, body["desired"]) == (200, "running")
    status, body, _ = await api.call("POST", "/api/bots/b1/restart", ALICE)
    assert status == 200
    assert pools.bots["b1"].nonce == 1
    assert pools.pools["pool-1"].generation == gen + 3

    monkeypatch.setattr(bots_module, "DELETE_WAIT", 0.05)
    status, body, _ = await api.call("DELETE", "/api/bots/b1?purge=true", ALICE)
    assert status == 202
    assert body == {"success": True, "instanceId": "b1", "status": "deleting", "archived": False}
    assert pools.bots["b1"].deleting
    assert pools.bots["b1"].purge
    status, body, _ = await api.call("POST", "/api/bots/b1/start", ALICE)
    assert_error(status, body, 409)


async def test_a_stopped_bot_is_not_proxied(api: Api) -> None:
    await api.provision(ALICE, instanceId="b1")
    await api.call("POST", "/api/bots/b1/stop", ALICE)
    status, body, _ = await api.call("GET", "/api/bots/b1/status", ALICE)
    assert_error(status, body, 503)


async def test_an_unreachable_bot_is_a_502(api: Api) -> None:
    await api.provision(ALICE, instanceId="b1")
    # Not reported RUNNING yet: no traffic (and no credentials) go to its port.
    status, body, _ = await api.call("GET", "/bots/b1/api/v1/status", ALICE)
    assert_error(status, body, 503)
    # Reported RUNNING, but nothing listens on the port: the fake runtime started nothing.
    report_running(api, "b1")
    status, body, _ = await api.call("GET", "/bots/b1/api/v1/status", ALICE)
    assert_error(status, body, 502)


async def test_the_store_survives_a_new_app(make_api: ApiFactory) -> None:
    first = await make_api()
    await first.provision(ALICE, instanceId="kept")
    await first.client.close()
    second = await make_api()
    status, body, _ = await second.call("GET", "/api/bots/kept", ALICE)
    assert status == 200, body
    assert ("inspect", "pool-1") in second.runtime.calls


# -- secrets never leave the controller ---------------------------------------------------


async def test_no_response_contains_a_secret(api: Api) -> None:
    responses: list[str] = []

    async def record(method: str, path: str, token: str = ADMIN_TOKEN, **kw: Any) -> None:
        _, _, text = await api.call(method, path, token, **kw)
        responses.append(text)

    for token, bot_id in ((ALICE, "a1"), (BOB, "b1"), (ADMIN_TOKEN, "x1")):
        await record("POST", "/api/bots", token, json={"instanceId": bot_id})
    await record("POST", "/api/provision-enhanced", ALICE, json={"instanceId": "a2"})
    for token in (ALICE, BOB, ADMIN_TOKEN):
        await record("GET", "/api/bots", token)
    for bot_id in ("a1", "a2", "b1", "x1"):
        for path in (
            f"/api/bots/{bot_id}",
            f"/api/pool/bot/{bot_id}",
            f"/api/bots/{bot_id}/status",
            f"/bots/{bot_id}/api/v1/show_config",
        ):
            await record("GET", path)
        await record("GET", f"/api/bots/{bot_id}", ALICE)
    for action in ("stop", "start", "restart"):
        await record("POST", f"/api/bots/a1/{action}", ALICE)
    await record("GET", "/api/pool/status")
    await record("POST", "/api/pool/health-check")
    await record("GET", "/api/agents")
    await record("GET", "/healthz")
    await record("GET", "/api/bots/a1", "wrong-token")

    secrets = {JWT_SECRET, ADMIN_TOKEN}
    for bot in api.controller.pools.registry.bots.values():
        secrets |= {bot.secrets.password, bot.secrets.jwt_secret, bot.secrets.ws_token}
    for launch in api.runtime.launches.values():
        secrets.add(launch.token)
    assert len(secrets) == 2 + 3 * 4 + 1
    for text in responses:
        assert text
        for secret in secrets:
            assert secret not in text
