"""The dashboard on the real app: sign-in into a cookie, what the cookie may do (only the
dashboard's API routes, state changes only with the CSRF token), sign-out, and pages that
show a user only their own bots."""

from __future__ import annotations

import asyncio
import re
import time
from typing import Any

from aiohttp import ClientResponse

from controller.api import events as events_api
from controller.ui.session import COOKIE, CSRF_HEADER
from tests.support import ADMIN_TOKEN, user_token
from tests.unit.controller.apps import ALICE, BOB, Api, report

CSRF_META = re.compile(r'<meta name="csrf-token" content="([^"]+)">')


async def sign_in(api: Api, token: str) -> tuple[str, str]:
    """Sign in; returns the session cookie and the page's CSRF token."""
    resp = await api.client.post("/ui/login", data={"token": token}, allow_redirects=False)
    assert resp.status == 303, await resp.text()
    assert resp.headers["Location"] == "/ui/"
    cookie = resp.cookies[COOKIE].value
    page = await api.client.get("/ui/", cookies={COOKIE: cookie})
    assert page.status == 200
    return cookie, CSRF_META.search(await page.text()).group(1)


async def with_cookie(
    api: Api, method: str, path: str, cookie: str, **headers: str
) -> tuple[int, Any]:
    async with api.client.request(method, path, cookies={COOKIE: cookie}, headers=headers) as r:
        is_json = r.content_type.endswith("json")
        return r.status, await r.json(content_type=None) if is_json else None


async def test_sign_in_sets_a_strict_httponly_cookie(api: Api):
    resp: ClientResponse = await api.client.post(
        "/ui/login", data={"token": ALICE}, allow_redirects=False
    )
    assert resp.status == 303
    header = resp.headers["Set-Cookie"]
    assert header.startswith(f"{COOKIE}=")
    for flag in ("HttpOnly", "SameSite=Strict", "Max-Age=3600", "Path=/"):
        assert flag in header, header
    assert "Secure" not in header  # plain HTTP here; over TLS (or UI_COOKIE_SECURE) it is
    assert ALICE not in header  # the token itself is never the cookie


async def test_a_secure_cookie_when_configured(make_api):
    api = await make_api(UI_COOKIE_SECURE="true", UI_SESSION_TTL="600000")
    resp = await api.client.post("/ui/login", data={"token": ALICE}, allow_redirects=False)
    assert "Secure" in resp.headers["Set-Cookie"]
    assert "Max-Age=600" in resp.headers["Set-Cookie"]


async def test_a_bad_token_or_another_origin_is_refused(api: Api):
    for token in ("", "nope", user_token("alice", role="root")):
        resp = await api.client.post("/ui/login", data={"token": token}, allow_redirects=False)
        assert resp.status == 401
        assert COOKIE not in resp.cookies
        assert "that token is not valid" in await resp.text()
    resp = await api.client.post(
        "/ui/login", data={"token": ALICE}, headers={"Origin": "http://evil.example"},
        allow_redirects=False,
    )  # fmt: skip
    assert resp.status == 403 and COOKIE not in resp.cookies
    own = str(api.client.make_url("/").origin())
    resp = await api.client.post(
        "/ui/login", data={"token": ALICE}, headers={"Origin": own}, allow_redirects=False
    )
    assert resp.status == 303 and COOKIE in resp.cookies


async def test_pages_need_a_session(api: Api):
    for path in ("/ui/", "/ui/bots/x"):
        resp = await api.client.get(path, allow_redirects=False)
        assert (resp.status, resp.headers["Location"]) == (302, "/ui/login")
    resp = await api.client.get("/ui/", cookies={COOKIE: "forged.cookie"}, allow_redirects=False)
    assert resp.status == 302
    login = await api.client.get("/ui/login")
    assert login.status == 200
    assert "script-src 'self'" in login.headers["Content-Security-Policy"]
    assert login.headers["X-Frame-Options"] == "DENY"


async def test_the_cookie_sees_only_the_users_own_bots(api: Api):
    await api.provision(ALICE, instanceId="alice-1")
    await api.provision(BOB, instanceId="bob-1")
    cookie, _ = await sign_in(api, ALICE)
    status, data = await with_cookie(api, "GET", "/api/bots", cookie)
    assert status == 200
    assert [b["instanceId"] for b in data["bots"]] == ["alice-1"]
    assert (await with_cookie(api, "GET", "/api/bots/bob-1", cookie))[0] == 403
    assert (await with_cookie(api, "GET", "/api/pool/status", cookie))[0] == 403
    assert (await with_cookie(api, "GET", "/api/pool/migration/log", cookie))[0] == 403
    assert (await with_cookie(api, "GET", "/api/pool/upgrade", cookie))[0] == 403
    # Pages: her bot's, not Bob's (the API's own check decides).
    mine = await api.client.get("/ui/bots/alice-1", cookies={COOKIE: cookie})
    assert mine.status == 200 and 'data-bot="alice-1"' in await mine.text()
    theirs = await api.client.get("/ui/bots/bob-1", cookies={COOKIE: cookie})
    assert theirs.status == 403
    assert "bob-1" not in (await theirs.text()).replace("/ui/bots/bob-1", "")
    missing = await api.client.get("/ui/bots/nobody", cookies={COOKIE: cookie})
    assert missing.status == 404
    bad = await api.client.get("/ui/bots/%3Cscript%3E", cookies={COOKIE: cookie})
    assert bad.status == 400
    assert "<script>" not in await bad.text()  # the id is shown escaped, if at all


async def test_admin_session_sees_everything(api: Api):
    await api.provision(ALICE, instanceId="alice-1")
    cookie, _ = await sign_in(api, ADMIN_TOKEN)
    status, data = await with_cookie(api, "GET", "/api/pool/status", cookie)
    assert status == 200 and data["pools"]
    status, data = await with_cookie(api, "GET", "/api/pool/migration/log", cookie)
    assert (status, data["runs"]) == (200, [])
    status, data = await with_cookie(api, "GET", "/api/pool/upgrade", cookie)
    assert (status, data["running"], data["runs"]) == (200, False, [])
    page = await api.client.get("/ui/", cookies={COOKIE: cookie})
    text = await page.text()
    assert 'id="pools"' in text and "admin (admin)" in text
    assert ADMIN_TOKEN not in text


async def test_state_changes_need_the_csrf_token(api: Api):
    await api.provision(ALICE, instanceId="alice-1")
    cookie, csrf = await sign_in(api, ALICE)
    for method, path in (
        ("POST", "/api/bots/alice-1/stop"), ("POST", "/api/bots/alice-1/start"),
        ("POST", "/api/bots/alice-1/restart"), ("DELETE", "/api/bots/alice-1"),
    ):  # fmt: skip
        status, data = await with_cookie(api, method, path, cookie)
        assert (status, data["error"]) == (403, "missing or wrong CSRF token"), path
        status, _ = await with_cookie(api, method, path, cookie, **{CSRF_HEADER: "x" + csrf})
        assert status == 403
    status, bot, _ = await api.call("GET", "/api/bots/alice-1", ALICE)
    assert (status, bot["desired"]) == (200, "running")  # nothing changed, nothing deleted
    status, data = await with_cookie(
        api, "POST", "/api/bots/alice-1/stop", cookie, **{CSRF_HEADER: csrf}
    )
    assert (status, data["desired"]) == (200, "stopped")


async def test_the_cookie_authorizes_only_the_dashboards_routes(api: Api):
    await api.provision(ALICE, instanceId="alice-1")
    cookie, csrf = await sign_in(api, ADMIN_TOKEN)
    refused = [
        ("POST", "/api/bots"),  # provisioning is not on the dashboard
        ("POST", "/api/pool/cleanup"),
        ("POST", "/api/pool/upgrade"),  # reading the runs, not starting one
        ("GET", "/bots/alice-1/api/v1/ping"),  # the bot proxy: tokens only
        ("GET", "/api/bots/alice-1/ping"),
        ("GET", "/metrics"),
    ]
    for method, path in refused:
        status, data = await with_cookie(api, method, path, cookie, **{CSRF_HEADER: csrf})
        assert status == 401, (method, path, status, data)


async def test_a_bearer_header_wins_over_the_cookie(api: Api):
    await api.provision(ALICE, instanceId="alice-1")
    await api.provision(BOB, instanceId="bob-1")
    admin_cookie, _ = await sign_in(api, ADMIN_TOKEN)
    # A token request behaves exactly as without the cookie, CSRF token or not.
    status, data = await with_cookie(
        api, "GET", "/api/bots", admin_cookie, Authorization=f"Bearer {BOB}"
    )
    assert [b["instanceId"] for b in data["bots"]] == ["bob-1"]
    status, _ = await with_cookie(
        api, "POST", "/api/bots/bob-1/stop", admin_cookie, Authorization=f"Bearer {BOB}"
    )
    assert status == 200
    status, _ = await with_cookie(api, "GET", "/api/bots", admin_cookie, Authorization="Bearer x")
    assert status == 401


async def test_the_events_stream_takes_the_cookie(api: Api):
    cookie, _ = await sign_in(api, ALICE)
    async with api.client.get("/api/pool/events", cookies={COOKIE: cookie}, timeout=5) as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"] == "text/event-stream"


async def test_sign_out_ends_the_session(api: Api):
    cookie, csrf = await sign_in(api, ALICE)
    # Without the CSRF token, signing out is refused (and the session lives on).
    resp = await api.client.post("/ui/logout", cookies={COOKIE: cookie}, allow_redirects=False)
    assert resp.status == 403
    assert (await with_cookie(api, "GET", "/api/bots", cookie))[0] == 200
    resp = await api.client.post(
        "/ui/logout", data={"csrf": csrf}, cookies={COOKIE: cookie}, allow_redirects=False
    )
    assert (resp.status, resp.headers["Location"]) == (303, "/ui/login")
    assert resp.cookies[COOKIE].value == ""
    status, data = await with_cookie(api, "GET", "/api/bots", cookie)
    assert (status, data["error"]) == (401, "signed out; sign in again")


async def test_a_signed_out_session_stays_so_after_a_restart(make_api):
    api = await make_api()
    signed_out, csrf = await sign_in(api, ALICE)
    kept, _ = await sign_in(api, ALICE)
    resp = await api.client.post(
        "/ui/logout", data={"csrf": csrf}, cookies={COOKIE: signed_out}, allow_redirects=False
    )
    assert resp.status == 303
    await api.client.close()  # the controller stops; another starts on the same store

    again = await make_api()
    status, data = await with_cookie(again, "GET", "/api/bots", signed_out)
    assert (status, data["error"]) == (401, "signed out; sign in again")
    assert (await with_cookie(again, "GET", "/api/bots", kept))[0] == 200
    page = await again.client.get("/ui/", cookies={COOKIE: signed_out}, allow_redirects=False)
    assert (page.status, page.headers["Location"]) == (302, "/ui/login")


async def test_static_files(api: Api):
    resp = await api.client.get("/ui/static/dashboard.js")
    assert resp.status == 200 and resp.content_type == "text/javascript"
    assert "innerHTML" not in (await resp.text()).replace("never innerHTML", "")
    assert (await api.client.get("/ui/static/..%2fpages.py")).status == 404
    assert (await api.client.get("/ui/static/nothing.js")).status == 404


async def test_a_bots_usage_history_for_its_owner_only(api: Api):
    await api.provision(ALICE, instanceId="alice-1")
    await api.provision(BOB, instanceId="bob-1")
    report(api, "alice-1", "RUNNING")
    report(api, "bob-1", "STOPPED")
    api.controller.usage.sample()
    cookie, _ = await sign_in(api, ALICE)
    status, data = await with_cookie(api, "GET", "/api/pool/bot/alice-1/usage", cookie)
    assert status == 200
    assert data["stepSeconds"] == 30
    assert [(s["memoryBytes"], s["cpuPercent"]) for s in data["samples"]] == [(0, 0.0)]
    assert (await with_cookie(api, "GET", "/api/pool/bot/bob-1/usage", cookie))[0] == 403
    status, data, _ = await api.call("GET", "/api/pool/bot/bob-1/usage", BOB)
    assert (status, data["samples"]) == (200, [])  # stopped: no process, no sample


async def test_an_events_stream_ends_with_its_session(api: Api, monkeypatch):
    monkeypatch.setattr(events_api, "KEEPALIVE_SECONDS", 0.05)
    short = user_token("alice", exp=int(time.time()) + 2)  # the session ends with it
    cookie, _ = await sign_in(api, short)
    async with api.client.get("/api/pool/events", cookies={COOKIE: cookie}) as resp:
        assert resp.status == 200
        body = await asyncio.wait_for(resp.content.read(), 10)  # until the stream ends
    assert body.endswith(b": session ended\n\n")


async def test_an_events_stream_ends_when_its_session_signs_out(api: Api, monkeypatch):
    monkeypatch.setattr(events_api, "KEEPALIVE_SECONDS", 0.05)
    cookie, csrf = await sign_in(api, ALICE)
    async with api.client.get("/api/pool/events", cookies={COOKIE: cookie}) as resp:
        assert resp.status == 200
        assert await asyncio.wait_for(resp.content.readuntil(b"\n\n"), 5) == b": keepalive\n\n"
        out = await api.client.post("/ui/logout", data={"csrf": csrf}, cookies={COOKIE: cookie},
                                    allow_redirects=False)  # fmt: skip
        assert out.status == 303
        body = await asyncio.wait_for(resp.content.read(), 10)
    assert body.endswith(b": session ended\n\n")


async def test_a_bots_page_says_how_to_open_it_in_frequi(make_api):
    api = await make_api(FREQUI_URL="https://frequi.example/ui/")
    await api.provision(ALICE, instanceId="alice-1")
    cookie, _ = await sign_in(api, ALICE)
    page = await (await api.client.get("/ui/bots/alice-1", cookies={COOKIE: cookie})).text()
    assert (
        '<a id="frequi-open" href="https://frequi.example/ui/" target="_blank" '
        'rel="noopener noreferrer">Open FreqUI</a>'
    ) in page
    assert '<code id="frequi-url">/bots/alice-1</code>' in page  # the page makes it absolute
    assert '<code id="frequi-user">alice</code>' in page
    assert ALICE not in page  # the password is the user's token: named, never shown


async def test_without_frequi_url_the_page_has_no_frequi_link(api: Api):
    await api.provision(ALICE, instanceId="alice-1")
    cookie, _ = await sign_in(api, ALICE)
    page = await (await api.client.get("/ui/bots/alice-1", cookies={COOKIE: cookie})).text()
    assert "frequi-open" not in page and 'id="frequi-url"' in page
