"""The bot proxy against real fake bots: what reaches the bot, what comes back, who may ask."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import signal
import time
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from yarl import URL

from tests.support import (
    ADMIN_TOKEN,
    ControllerHarness,
    fakebot_pids,
    pid_alive,
    user_token,
    wait_for,
)

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="module")]

BASE = 22300
ALICE = user_token("alice")
BOB = user_token("bob")
MAX_BODY = 65536
PREFIXES = ("/api/bots/{id}/", "/bots/{id}/api/v1/")


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def h(module_harness_factory) -> ControllerHarness:
    harness = await module_harness_factory(
        MAX_BOTS_PER_CONTAINER="3",
        POOL_BASE_PORT=str(BASE),
        PROXY_TIMEOUT="1000",
        MAX_BODY_BYTES=str(MAX_BODY),
    )
    await harness.provision(ALICE, instanceId="px-1")
    await harness.provision(ALICE, instanceId="px-2")
    await harness.provision(BOB, instanceId="px-bob")
    await asyncio.gather(*(harness.wait_running(b) for b in ("px-1", "px-2", "px-bob")))
    return harness


async def raw(
    h: ControllerHarness, method: str, path: str, **kwargs: Any
) -> tuple[int, Any, bytes]:
    """(status, response headers, body) of a request with exactly this (encoded) URL."""
    async with h.http.request(method, URL(h.base + path, encoded=True), **kwargs) as r:
        return r.status, r.headers, await r.read()


def bot_api(h: ControllerHarness, bot_id: str) -> dict[str, Any]:
    pool = h.controller.pools.registry.bots[bot_id].pool_id
    config = json.loads((h.pool_dir(pool) / "bots" / bot_id / "config.json").read_text())
    return config["api_server"]


async def test_methods_queries_and_bodies_reach_the_bot_unchanged(h):
    query = "a=1&pair=BTC%2FUSDT&note=x%20y&amp=%26b%3D2&plus=1%2B1&empty="
    bodies = {
        "GET": b"",
        "POST": json.dumps({"pair": "ETH/USDT", "text": "é ✓"}).encode(),
        "PUT": b"plain text body\nline two",
        "DELETE": b'{"force": true}',
    }
    for prefix in PREFIXES:
        path = prefix.format(id="px-1") + "echo"
        for method, body in bodies.items():
            status, _, raw_body = await raw(
                h, method, f"{path}?{query}", headers=h.headers(ALICE), data=body
            )
            assert status == 200, (path, method, raw_body)
            echo = json.loads(raw_body)
            assert echo["method"] == method
            assert echo["path"] == "/api/v1/echo"
            assert echo["raw_query"] == query, (path, method)
            assert echo["body"] == body.decode()
        status, echo = await h.call("GET", path, ALICE)
        assert status == 200 and echo["raw_query"] == ""
    # A large (streamed) body under the limit arrives whole.
    big = ("0123456789abcdef" * (MAX_BODY // 16 - 64)).encode()
    status, echo = await h.call("POST", "/api/bots/px-1/echo", ALICE, data=big)
    assert status == 200 and echo["body"] == big.decode()


async def test_headers_between_client_and_bot(h):
    api = bot_api(h, "px-1")
    bot_auth = basic(api["username"], api["password"])
    sent = {
        "Authorization": f"Bearer {ALICE}",
        "Cookie": "session=client-secret",
        "Proxy-Authorization": "Basic Zm9vOmJhcg==",
        "Keep-Alive": "timeout=5",
        "TE": "trailers",
        "Trailer": "X-Checksum",
        "Connection": "keep-alive, X-Hop-Only",
        "X-Hop-Only": "must-not-pass",
        "X-Custom": "kept",
        "Accept": "application/json",
    }
    for prefix in PREFIXES:
        path = prefix.format(id="px-1") + "echo?x=1"
        status, headers, body = await raw(h, "POST", path, headers=sent, data=b"{}")
        assert status == 200, body
        echoed = {k.lower(): v for k, v in json.loads(body)["headers"].items()}
        assert echoed["x-custom"] == "kept" and echoed["accept"] == "application/json"
        for hop in ("cookie", "proxy-authorization", "keep-alive", "te", "trailer", "x-hop-only"):
            assert hop not in echoed, (prefix, hop)
        # The bot sees its own credentials, never the client's.
        assert echoed["authorization"] == bot_auth
        assert ALICE not in json.dumps(echoed)
        # What the bot answers comes back, minus its cookie; the bot's password does not.
        assert headers.get("X-Fake-Bot") == "1"
        assert "Set-Cookie" not in headers
        assert "Authorization" not in headers
        assert not any(api["password"] in v for v in headers.values())


async def test_who_may_use_the_proxy(h):
    echo_bots = "/bots/px-1/api/v1/echo"
    echo_api = "/api/bots/px-1/echo"
    cases = [
        # freqtrade-client style: basic auth with the user id and one of the user's tokens.
        (echo_bots, {"Authorization": basic("alice", ALICE)}, 200),
        (echo_bots, {"Authorization": basic("admin", ADMIN_TOKEN)}, 200),
        (echo_bots, {"Authorization": basic("bob", ALICE)}, 401),
        (echo_bots, {"Authorization": basic("alice", BOB)}, 401),
        (echo_bots, {"Authorization": basic("alice", "not-a-token")}, 401),
        (echo_bots, {"Authorization": basic("bob", BOB)}, 403),
        (echo_bots, {"Authorization": "Basic !!!notbase64"}, 401),
        (echo_bots, {}, 401),
        (echo_bots, {"Authorization": f"Bearer {BOB}"}, 403),
        (echo_bots, {"Authorization": f"Bearer {ALICE}"}, 200),
        # The seed's prefix takes bearer tokens only.
        (echo_api, {"Authorization": basic("alice", ALICE)}, 401),
        (echo_api, {"Authorization": f"Bearer {ALICE}"}, 200),
        (echo_api, {"Authorization": f"Bearer {ADMIN_TOKEN}"}, 200),
        (echo_api, {"Authorization": f"Bearer {BOB}"}, 403),
        (echo_api, {"Authorization": "Bearer garbage"}, 401),
        ("/api/bots/nobody-here/echo", {"Authorization": f"Bearer {ALICE}"}, 404),
        ("/bots/nobody-here/api/v1/echo", {"Authorization": f"Bearer {ALICE}"}, 404),
    ]
    for path, headers, expected in cases:
        status, _headers, body = await raw(h, "GET", path, headers=headers)
        assert status == expected, (path, headers, body)
        if expected != 200:
            assert json.loads(body)["success"] is False


async def test_paths_cannot_leave_the_bots_api(h):
    for path in ("/api/bots/px-1/%2E%2E/%2E%2E/ping", "/bots/px-1/api/v1/a/%2e%2e/%2e%2e/x",
                 "/api/bots/px-1/..%2Fshow_config"):  # fmt: skip
        status, _, body = await raw(h, "GET", path, headers=h.headers(ALICE))
        assert status == 400 and json.loads(body)["success"] is False, (path, body)
    # Encoded characters that are not dot segments pass through as they are.
    status, _, body = await raw(h, "GET", "/api/bots/px-1/ec%68o", headers=h.headers(ALICE))
    assert status == 200 and json.loads(body)["path"] == "/api/v1/echo", body


async def test_freqtrade_login_refresh_and_tokens(h):
    login = "/bots/px-1/api/v1/token/login"
    refresh = "/bots/px-1/api/v1/token/refresh"
    alice_basic = {"Authorization": basic("alice", ALICE)}
    status, tokens = await h.call("POST", login, None, headers=alice_basic)
    assert status == 200, tokens
    access, refresh_token = tokens["access_token"], tokens["refresh_token"]
    assert access and refresh_token and access != refresh_token

    for path in ("/bots/px-1/api/v1/show_config", "/api/bots/px-1/show_config"):
        status, cfg = await h.call("GET", path, access)
        assert status == 200 and cfg["bot_name"] == "px-1" and cfg["fake"] is True
    # The tokens are alice's: her other bot yes, bob's bot no.
    assert (await h.call("GET", "/bots/px-2/api/v1/show_config", access))[0] == 200
    assert (await h.call("GET", "/bots/px-bob/api/v1/show_config", access))[0] == 403

    status, renewed = await h.call("POST", refresh, refresh_token)
    assert status == 200 and set(renewed) == {"access_token"}
    assert (await h.call("GET", "/bots/px-1/api/v1/show_config", renewed["access_token"]))[0] == 200

    # A refresh token is not an access token, and the other way round.
    status, body = await h.call("GET", "/bots/px-1/api/v1/show_config", refresh_token)
    assert status == 401 and body["success"] is False
    assert (await h.call("GET", "/api/bots/px-1", refresh_token))[0] == 401
    assert (await h.call("POST", refresh, access))[0] == 401

    # Login needs basic auth with matching credentials, for a bot the user owns.
    assert (await h.call("POST", login, ALICE))[0] == 401
    assert (await h.call("POST", login, None))[0] == 401
    bad = {"Authorization": basic("bob", ALICE)}
    assert (await h.call("POST", login, None, headers=bad))[0] == 401
    bob_login = "/bots/px-bob/api/v1/token/login"
    assert (await h.call("POST", bob_login, None, headers=alice_basic))[0] == 403
    assert (await h.call("POST", "/bots/px-bob/api/v1/token/refresh", refresh_token))[0] == 403


async def test_message_websocket_passthrough(h):
    login = "/bots/px-1/api/v1/token/login"
    alice_basic = {"Authorization": basic("alice", ALICE)}
    status, tokens = await h.call("POST", login, None, headers=alice_basic)
    assert status == 200
    ws_base = h.base.replace("http://", "ws://")
    url = f"{ws_base}/bots/px-1/api/v1/message/ws?token={tokens['access_token']}"
    async with h.http.ws_connect(url) as ws:
        for payload in ('{"type": "subscribe", "data": ["whitelist"]}', "second"):
            await ws.send_str(payload)
            msg = await ws.receive(timeout=10)
            assert msg.type == aiohttp.WSMsgType.TEXT, msg
            assert json.loads(msg.data) == {"type": "echo", "data": payload}

    # Bad token, someone else's bot, a refresh token: no stream.
    for bot, token, expected in [
        ("px-1", "garbage", 401),
        ("px-bob", tokens["access_token"], 403),
        ("px-1", tokens["refresh_token"], 401),
    ]:
        with pytest.raises(aiohttp.WSServerHandshakeError) as err:
            await h.http.ws_connect(f"{ws_base}/bots/{bot}/api/v1/message/ws?token={token}")
        assert err.value.status == expected


async def test_slow_bot_is_a_504(h):
    started = time.monotonic()
    status, body = await h.call("GET", "/api/bots/px-1/slow?secs=4", ALICE)
    assert status == 504 and body["success"] is False, body
    assert time.monotonic() - started < 3.5
    # The bot itself is fine afterwards.
    status, body = await h.call("GET", "/api/bots/px-1/slow?secs=0.1", ALICE)
    assert (status, body) == (200, {"slept": True})


async def test_bot_failing_mid_response_cuts_the_connection(h):
    # Once the bot's status line is out, an error must not be glued into the body: the
    # client sees the connection cut before the body's end.
    reader, writer = await asyncio.open_connection("127.0.0.1", h.settings.controller_port)
    request = (
        f"GET /api/bots/px-1/broken HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {ALICE}\r\n\r\n"
    )
    writer.write(request.encode())
    data = await asyncio.wait_for(reader.read(-1), 10)  # until the controller closes
    writer.close()
    assert data.startswith(b"HTTP/1.1 200 ") and b'{"partial": ' in data
    assert data.count(b"HTTP/1.1") == 1, data
    assert not data.endswith(b"0\r\n\r\n"), data  # no chunked terminator: not "complete"
    with pytest.raises(aiohttp.ClientPayloadError):
        async with h.http.get(h.base + "/api/bots/px-1/broken", headers=h.headers(ALICE)) as r:
            assert r.status == 200
            await r.read()
    assert (await h.call("GET", "/api/bots/px-1/ping", ALICE)) == (200, {"status": "pong"})


async def test_body_over_the_limit_is_a_413(h):
    too_big = b"x" * (MAX_BODY + 1)
    for prefix in PREFIXES:
        status, body = await h.call("POST", prefix.format(id="px-1") + "echo", ALICE, data=too_big)
        assert status == 413 and body["success"] is False, (prefix, body)

    async def chunked():  # no Content-Length: the proxy must count while streaming
        for _ in range(4):
            yield b"y" * (MAX_BODY // 2)

    status, body = await h.call("POST", "/api/bots/px-1/echo", ALICE, data=chunked())
    assert status == 413 and body["success"] is False, body
    # The proxy and bot still serve normal requests.
    status, echo = await h.call("POST", "/api/bots/px-1/echo", ALICE, data=b"small")
    assert status == 200 and echo["body"] == "small"


async def test_stopped_bot_is_a_503(h):
    status, _ = await h.call("POST", "/api/bots/px-2/stop", ALICE)
    assert status == 200
    # At once (the bot should not run) and once it really is stopped.
    for _ in range(2):
        for prefix in PREFIXES:
            status, body = await h.call("GET", prefix.format(id="px-2") + "ping", ALICE)
            assert status == 503 and body["success"] is False, body

        async def stopped():
            return (await h.bot("px-2"))["process"]["state"] == "STOPPED"

        await wait_for(stopped)
    status, _ = await h.call("POST", "/api/bots/px-2/start", ALICE)
    assert status == 200
    await h.wait_applied("pool-1")
    await h.wait_running("px-2")
    assert (await h.call("GET", "/api/bots/px-2/ping", ALICE)) == (200, {"status": "pong"})


async def test_bot_killed_outside_comes_back(h):
    await h.wait_running("px-2")
    status, cfg = await h.call("GET", "/api/bots/px-2/show_config", ALICE)
    assert status == 200, cfg
    old_pid = cfg["pid"]
    assert (await h.pids())["px-2"] == old_pid
    os.kill(old_pid, signal.SIGKILL)
    await wait_for(lambda: not pid_alive(old_pid), timeout=5, step=0.01)

    # While it is down, the proxy answers with a JSON error of its own.
    status, body = await h.call("GET", "/api/bots/px-2/show_config", ALICE)
    assert status in (502, 503), (status, body)
    assert body["success"] is False

    # supervisord restarts it; the agent reports the new process.
    async def back():
        proc = (await h.bot("px-2"))["process"]
        ok = proc["state"] == "RUNNING" and proc["ping"]["ok"] and proc["pid"] != old_pid
        return proc["pid"] if ok else None

    new_pid = await wait_for(back, timeout=30)
    status, cfg = await h.call("GET", "/api/bots/px-2/show_config", ALICE)
    assert status == 200 and cfg["pid"] == new_pid
    bot_dir = h.pool_dir("pool-1") / "bots" / "px-2"
    assert fakebot_pids(bot_dir) == [new_pid]
    # Its neighbours were not touched.
    assert all(pid_alive(p) for b, p in (await h.pids()).items() if b != "px-2")
