"""The pool manager: a bot move cut short by a crash is finished first at start-up; a
pool's failed creation leaves nothing in the way of the next."""

from __future__ import annotations

import pytest

from controller.errors import RuntimeFailure
from controller.runtimes import PoolLaunch
from tests.unit.controller.apps import Api, ApiFactory


async def test_a_bots_directory_left_in_another_pool_is_brought_to_its_own(
    make_api: ApiFactory,
) -> None:
    api: Api = await make_api()
    await api.provision(instanceId="b1")
    await api.provision(instanceId="b2")
    runtime = api.runtime
    # b1's directory is still in pool-9 (a dead pool); b2's is where it belongs; b3 is not
    # a bot of ours.
    runtime.locations = {"b1": ["pool-9"], "b2": ["pool-1"], "b3": ["pool-9"]}
    runtime.calls.clear()
    await api.controller.pools.adopt()
    assert [c for c in runtime.calls if c[0] == "move"] == [("move", "b1:pool-9>pool-1")]


async def test_files_in_a_pool_that_still_runs_are_never_taken(make_api: ApiFactory) -> None:
    api: Api = await make_api()
    await api.provision(instanceId="b1")
    await api.provision(instanceId="b2")  # pool-1 runs (the fake reports made pools running)
    api.runtime.locations = {"b1": ["pool-1"], "b2": ["pool-1"]}
    api.controller.pools.bots["b2"].pool_id = "pool-2"  # as if the store had moved it
    api.runtime.calls.clear()
    await api.controller.pools.adopt()
    assert not [c for c in api.runtime.calls if c[0] == "move"]


async def test_what_a_failed_creation_made_goes_and_its_number_is_taken_again(api: Api) -> None:
    api.runtime.half_made.add("pool-1")
    status, body, _ = await api.call("POST", "/api/bots", json={"instanceId": "b1"})
    assert status == 502 and "never came up" in body["error"]
    assert "pool-1" not in api.runtime.launches  # discarded
    api.runtime.half_made.clear()
    assert (await api.provision(instanceId="b2"))["poolId"] == "pool-1"


async def test_a_leftover_that_would_not_go_goes_before_its_pool_is_made_again(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    discard = api.runtime.discard

    async def daemon_away(pool_id: str) -> None:
        raise RuntimeFailure("docker: Connection aborted.")

    monkeypatch.setattr(api.runtime, "discard", daemon_away)
    api.runtime.half_made.add("pool-1")
    assert (await api.call("POST", "/api/bots", json={"instanceId": "b1"}))[0] == 502
    assert "pool-1" in api.runtime.launches  # still there: the runtime could not discard it
    monkeypatch.setattr(api.runtime, "discard", discard)
    api.runtime.half_made.clear()
    assert (await api.provision(instanceId="b2"))["poolId"] == "pool-1"


async def test_a_pool_this_creation_did_not_make_is_left_alone(api: Api) -> None:
    someone_elses = PoolLaunch("pool-1", 10, 21000, "t" * 64, "ws://elsewhere")
    api.runtime.launches["pool-1"] = someone_elses
    status, body, _ = await api.call("POST", "/api/bots", json={"instanceId": "b1"})
    assert status == 502 and "left alone" in body["error"]
    assert api.runtime.launches["pool-1"] is someone_elses
    assert ("discard", "pool-1") not in api.runtime.calls
