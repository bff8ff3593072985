"""/api/pool/upgrade on a runtime without images (the local one, or the tests' fake): an
admin sees there is nothing to upgrade, a user sees nothing, bad bodies say why."""

from __future__ import annotations

from tests.unit.controller.apps import ALICE, Api


async def test_only_an_admin_reaches_the_upgrade(api: Api) -> None:
    for method in ("GET", "POST"):
        status, body, _ = await api.call(method, "/api/pool/upgrade", ALICE)
        assert (status, body["success"]) == (403, False)


async def test_a_runtime_without_images_has_nothing_to_upgrade(api: Api) -> None:
    await api.provision(instanceId="b1")
    status, body, _ = await api.call("GET", "/api/pool/upgrade")
    assert status == 200
    assert body == {"success": True, "running": False, "current": None, "runs": [],
                    "poolImage": None, "outdatedPools": []}  # fmt: skip
    for dry_run in (True, False):
        status, body, _ = await api.call("POST", "/api/pool/upgrade", json={"dryRun": dry_run})
        assert status == 409 and "runs no images" in body["error"], body
    status, body, _ = await api.call("GET", "/api/pool/status")
    assert status == 200 and body["outdatedPools"] == [] and body["pools"][0]["image"] is None


async def test_a_bad_body_is_a_clear_400(api: Api) -> None:
    status, body, _ = await api.call("POST", "/api/pool/upgrade", json={"canary": -1})
    assert status == 400 and "canary must be" in body["error"]
    status, body, _ = await api.call("POST", "/api/pool/upgrade", data=b"{nope")
    assert status == 400
    status, body, _ = await api.call("POST", "/api/pool/upgrade", json={"bots": ["a b"]})
    assert status == 400 and "instanceId" in body["error"]
