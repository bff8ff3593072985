"""EVENT_LOOP: the controller's app serves HTTP and agents' WebSockets on either loop."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest
from aiohttp import web

from common.protocol import Heartbeat, PoolStats, decode, encode
from controller.loop import EVENT_LOOPS, new_event_loop


async def _round_trip() -> tuple[str, bytes]:
    async def hello(_request: web.Request) -> web.Response:
        return web.json_response({"loop": type(asyncio.get_running_loop()).__module__})

    async def echo(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        async for msg in ws:
            await ws.send_bytes(encode(decode(msg.data)))
        return ws

    app = web.Application()
    app.add_routes([web.get("/", hello), web.get("/ws", echo)])
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        async with aiohttp.ClientSession() as http:
            async with http.get(f"http://127.0.0.1:{port}/") as answer:
                loop = (await answer.json())["loop"]
            async with http.ws_connect(f"http://127.0.0.1:{port}/ws") as ws:
                await ws.send_bytes(encode(Heartbeat(1, 2, [], PoolStats())))
                echoed = (await ws.receive(timeout=10)).data
    finally:
        await runner.cleanup()
    return loop, echoed


@pytest.mark.parametrize("kind", EVENT_LOOPS)
def test_the_app_serves_http_and_websockets_on_either_loop(kind: str) -> None:
    loop = new_event_loop(kind)
    try:
        module, echoed = loop.run_until_complete(_round_trip())
    finally:
        loop.close()
    assert module.startswith("uvloop" if kind == "uvloop" else "asyncio")
    assert decode(echoed) == Heartbeat(1, 2, [], PoolStats())
