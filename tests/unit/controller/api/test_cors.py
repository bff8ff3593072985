"""CORS for FreqUI served from elsewhere: the bot proxy under /bots/ answers FREQUI_URL's
origin (its preflights before authentication), no other origin, and no other route."""

from __future__ import annotations

from controller.api.cors import origin_of
from tests.unit.controller.apps import ALICE, Api, ApiFactory, report_running

FREQUI = "https://frequi.example:8443"
PREFLIGHT = {"Origin": FREQUI, "Access-Control-Request-Method": "POST",
             "Access-Control-Request-Headers": "authorization"}  # fmt: skip


def test_the_origin_of_a_url() -> None:
    assert origin_of("https://FreqUI.example:8443/ui/") == FREQUI
    assert origin_of("http://127.0.0.1:3000") == "http://127.0.0.1:3000"
    assert origin_of("") == ""


async def preflight(api: Api, path: str, **headers: str):
    return await api.client.options(path, headers={**PREFLIGHT, **headers})


async def test_frequis_origin_reaches_the_bot_proxy(make_api: ApiFactory) -> None:
    api = await make_api(FREQUI_URL=f"{FREQUI}/ui/")
    await api.provision(ALICE, instanceId="alice-1")
    resp = await preflight(api, "/bots/alice-1/api/v1/token/login")
    assert resp.status == 204
    assert resp.headers["Access-Control-Allow-Origin"] == FREQUI
    assert "authorization" in resp.headers["Access-Control-Allow-Headers"].lower()
    assert "POST" in resp.headers["Access-Control-Allow-Methods"]
    assert "Access-Control-Allow-Credentials" not in resp.headers  # no cookies, ever
    # Its real requests: the answer carries the header, an error too (the bot is not up).
    report_running(api, "alice-1")
    resp = await api.client.get(
        "/bots/alice-1/api/v1/ping",
        headers={"Origin": FREQUI, "Authorization": f"Bearer {ALICE}"},
    )
    assert resp.status == 502
    assert resp.headers["Access-Control-Allow-Origin"] == FREQUI
    assert resp.headers["Vary"] == "Origin"
    resp = await api.client.get("/bots/alice-1/api/v1/ping", headers={"Origin": FREQUI})
    assert resp.status == 401 and resp.headers["Access-Control-Allow-Origin"] == FREQUI


async def test_another_origin_or_route_gets_nothing(make_api: ApiFactory) -> None:
    api = await make_api(FREQUI_URL=FREQUI)
    await api.provision(ALICE, instanceId="alice-1")
    resp = await preflight(api, "/bots/alice-1/api/v1/token/login", Origin="https://evil.example")
    assert resp.status != 204  # not answered as a preflight: left to the routes
    assert "Access-Control-Allow-Origin" not in resp.headers
    for path in ("/api/bots", "/api/bots/alice-1/ping", "/ui/login"):
        resp = await api.client.get(path, headers={"Origin": FREQUI})
        assert "Access-Control-Allow-Origin" not in resp.headers, path
        resp = await preflight(api, path)
        assert "Access-Control-Allow-Origin" not in resp.headers, path


async def test_no_frequi_url_no_cors(api: Api) -> None:
    await api.provision(ALICE, instanceId="alice-1")
    resp = await preflight(api, "/bots/alice-1/api/v1/token/login")
    assert resp.status != 204 and "Access-Control-Allow-Origin" not in resp.headers
    resp = await api.client.get("/bots/alice-1/api/v1/ping", headers={"Origin": FREQUI})
    assert "Access-Control-Allow-Origin" not in resp.headers and "Vary" not in resp.headers
