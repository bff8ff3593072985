"""A small stand-in for a FreqTrade bot: the REST API shape ftpool relies on, in 50 ms.

Started by supervisord exactly like freqtrade (`<cmd> --config config.json` in the bot's
directory), it reads the same generated config: port, listen address and credentials.
Besides FreqTrade's ping, show_config, login and message WebSocket it serves /echo and
/slow, which let the proxy tests see exactly what reached the bot, and /exit, a crash.

Opt-in faults, read from marker files in the bot's directory: `crash-on-start` (it exits at
once), `leak-memory` holding N (it keeps N MiB more of its own memory every 100 ms,
without bound: a leaking strategy) and `spin-cpu` (a thread in a busy loop).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import sys
import threading

from aiohttp import web


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", nargs="?", default="trade")
    parser.add_argument("--config", required=True)
    args = parser.parse_args()
    if os.path.exists("crash-on-start"):
        # A bot that cannot start (a broken strategy, say): the tests' crash loop.
        sys.exit("fakebot: crash-on-start is set")
    leak_mib = _leak_rate()
    if os.path.exists("spin-cpu"):
        threading.Thread(target=_spin, daemon=True).start()
    with open(args.config) as f:
        config = json.load(f)
    api = config["api_server"]
    expected = "Basic " + base64.b64encode(f"{api['username']}:{api['password']}".encode()).decode()

    def authorized(request: web.Request) -> None:
        if request.headers.get("Authorization") != expected:
            raise web.HTTPUnauthorized(text='{"detail":"Unauthorized"}')

    async def ping(_request: web.Request) -> web.Response:
        return web.json_response({"status": "pong"})

    async def show_config(request: web.Request) -> web.Response:
        authorized(request)
        return web.json_response(
            {"bot_name": config.get("bot_name"), "strategy": config.get("strategy"),
             "dry_run": config.get("dry_run"), "pid": os.getpid(), "fake": True}
        )  # fmt: skip

    async def echo(request: web.Request) -> web.Response:
        authorized(request)
        body = await request.read()
        return web.json_response(
            {"method": request.method, "path": request.path, "query": request.query_string,
             "raw_query": request.rel_url.raw_query_string,
             "body": body.decode(errors="replace"), "headers": dict(request.headers)},
            headers={"X-Fake-Bot": "1", "Set-Cookie": "leak=1"},
        )  # fmt: skip

    async def slow(request: web.Request) -> web.Response:
        authorized(request)
        await asyncio.sleep(float(request.query.get("secs", "5")))
        return web.json_response({"slept": True})

    async def broken(request: web.Request) -> web.StreamResponse:
        """Start a chunked answer, then drop the connection: a bot dying mid-response."""
        authorized(request)
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        response.enable_chunked_encoding()
        await response.prepare(request)
        await response.write(b'{"partial": ')
        await asyncio.sleep(0.2)
        assert request.transport is not None
        request.transport.abort()
        return response

    async def exit_soon(request: web.Request) -> web.Response:
        """Answer, then exit with ?code=N: a bot crashing at run time."""
        authorized(request)
        code = int(request.query.get("code", "3"))
        asyncio.get_running_loop().call_later(0.1, os._exit, code)
        return web.json_response({"exiting": code})

    async def message_ws(request: web.Request) -> web.WebSocketResponse:
        if request.query.get("token") != api["ws_token"]:
            raise web.HTTPForbidden()
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        async for msg in ws:
            if msg.type == web.WSMsgType.TEXT:
                await ws.send_str(json.dumps({"type": "echo", "data": msg.data}))
        return ws

    kept: list[bytearray] = []
    leaking: list[asyncio.Task[None]] = []

    async def grow() -> None:
        while True:
            chunk = bytearray(leak_mib << 20)
            for i in range(0, len(chunk), 4096):  # touched: its own pages, not just promised
                chunk[i] = 1
            kept.append(chunk)
            await asyncio.sleep(0.1)

    async def leak(_app: web.Application) -> None:
        if leak_mib:
            leaking.append(asyncio.get_running_loop().create_task(grow()))

    app = web.Application()
    app.on_startup.append(leak)
    app.add_routes([
        web.get("/api/v1/ping", ping),
        web.get("/api/v1/show_config", show_config),
        web.route("*", "/api/v1/echo", echo),
        web.get("/api/v1/slow", slow),
        web.get("/api/v1/broken", broken),
        web.post("/api/v1/exit", exit_soon),
        web.get("/api/v1/message/ws", message_ws),
    ])  # fmt: skip
    print(f"fakebot {config.get('bot_name')} on {api['listen_port']}", file=sys.stderr, flush=True)
    web.run_app(app, host=api["listen_ip_address"], port=api["listen_port"], print=None)


def _spin() -> None:
    """A strategy in a busy loop (it lets the GIL go now and then, as Python code does)."""
    while True:
        sum(range(10_000))


def _leak_rate() -> int:
    """MiB to keep every 100 ms: the number in `leak-memory`, 0 without the file."""
    try:
        with open("leak-memory") as f:
            return max(0, min(int(f.read().strip() or "0"), 1024))
    except (OSError, ValueError):
        return 0


if __name__ == "__main__":
    main()
