"""`python -m agent.marketdata` as supervisord runs it: serving bots on its port and its
counters on a private unix socket; wrong arguments stop it with a clear message."""

from __future__ import annotations

import asyncio
import os
import stat
import sys

import aiohttp
import pytest

from agent.marketdata.address import proxy_base
from tests.support import free_port, wait_for


async def test_the_program_serves_bots_and_its_stats(tmp_path, emulator):
    port, socket_path = free_port(), tmp_path / "stats.sock"
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "agent.marketdata", "--port", str(port),
        "--stats-socket", str(socket_path), "--log-level", "warning",
    )  # fmt: skip
    try:
        async with aiohttp.ClientSession() as http:

            async def serving() -> bool:
                try:
                    async with http.get(f"http://127.0.0.1:{port}/") as r:
                        return r.status == 400  # names no upstream, but it answers
                except aiohttp.ClientError:
                    return False

            await wait_for(serving, 30)
            base = proxy_base(port, "binance", emulator.url + "/api/v3")
            async with http.get(base + "/depth?symbol=BTCUSDT&limit=5") as r:
                assert r.status == 200 and (await r.json())["bids"]
        assert stat.S_IMODE(os.stat(socket_path).st_mode) == 0o600
        connector = aiohttp.UnixConnector(path=str(socket_path))
        async with (
            aiohttp.ClientSession(connector=connector) as local,
            local.get("http://marketdata/stats") as r,
        ):
            stats = await r.json()
        [upstream] = stats["upstreams"]
        assert (upstream["exchange"], upstream["upstream"]) == ("binance", 1)
        assert stats["cache"]["entries"] == 1
    finally:
        process.terminate()
        assert await asyncio.wait_for(process.wait(), 30) == 0


@pytest.mark.parametrize(
    "args", [[], ["--port", "0"], ["--port", "1", "--quote-ttl-ms", "-1"], ["--port", "x"]]
)
async def test_wrong_arguments_are_refused(args):
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "agent.marketdata", *args, stderr=asyncio.subprocess.PIPE
    )
    _, err = await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode == 2 and b"usage:" in err
