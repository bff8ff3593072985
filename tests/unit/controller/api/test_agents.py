"""/api/agents/ws: how a refused first frame is counted and logged."""

from __future__ import annotations

from structlog.testing import capture_logs

from common.protocol import Hello, encode
from tests.unit.controller.apps import ALICE, ApiFactory


def rejected(logs: list[dict]) -> list[dict]:
    return [e for e in logs if e["event"] == "agent_frame_rejected"]


async def test_a_hello_with_a_wrong_token_logs_the_pool_it_named_never_the_token(
    make_api: ApiFactory,
) -> None:
    api = await make_api()
    await api.provision(ALICE, instanceId="b1")
    with capture_logs() as logs:
        ws = await api.client.ws_connect("/api/agents/ws")
        await ws.send_bytes(encode(Hello("pool-1", "wrong-token-value", "t", 2, 21000)))
        await ws.receive()
    assert ws.close_code == 4401
    [entry] = rejected(logs)
    assert entry["pool"] == "pool-1"
    assert entry["reason"] == "a hello with an unknown pool token"
    assert entry["peer"]
    assert "wrong-token-value" not in repr(logs)


async def test_a_first_frame_that_is_not_msgpack_is_refused_and_counted_once(
    make_api: ApiFactory,
) -> None:
    api = await make_api()
    with capture_logs() as logs:
        ws = await api.client.ws_connect("/api/agents/ws")
        await ws.send_bytes(b"\x00not msgpack")
        await ws.receive()
    assert ws.close_code == 4401
    [entry] = rejected(logs)
    assert entry["pool"] is None
    assert entry["reason"].startswith("first frame: ")
    assert api.controller.pools.sessions.frames_rejected == 1
