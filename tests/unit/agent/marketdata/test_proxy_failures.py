"""When the exchange fails, bots get a clear answer within a bounded time, never a hang; and
what comes in or back is bounded in size."""

from __future__ import annotations

import asyncio
import socket

from agent.marketdata.proxy import ProxyConfig
from tests.unit.agent.marketdata.conftest import add_fault, emulator_stats, upstream_requests

PATIENCE = 30  # seconds a test waits for any answer at all: far above every bound under test


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def test_an_unreachable_exchange_is_a_502(start_proxy):
    proxy = await start_proxy()
    base = proxy.base(f"http://127.0.0.1:{closed_port()}/api/v3")
    status, body, _ = await proxy.get(base, "/depth?symbol=BTCUSDT")
    assert status == 502 and "upstream unreachable" in body["error"]
    status, body, _ = await proxy.get(base, "/account?signature=x")
    assert status == 502 and "upstream unreachable" in body["error"]
    assert proxy.counters()["errors"] == 2


async def test_a_hanging_exchange_is_a_504_for_every_bot_waiting(start_proxy, emulator):
    proxy = await start_proxy(ProxyConfig(upstream_timeout=0.5))
    await add_fault(emulator, timeout=True, path="/api/v3/klines")
    base = proxy.base(emulator.url + "/api/v3")
    answers = await asyncio.wait_for(
        asyncio.gather(*(proxy.get(base, "/klines?symbol=BTCUSDT&interval=1m") for _ in range(5))),
        PATIENCE,
    )
    assert [a[0] for a in answers] == [504] * 5
    assert "no answer within 0.5 s" in answers[0][1]["error"]

    async def gave_up() -> bool:  # the emulator saw the proxy hang up
        return (await emulator_stats(emulator))["totals"]["statuses"].get("499") == 1

    for _ in range(PATIENCE * 10):
        if await gave_up():
            break
        await asyncio.sleep(0.1)
    assert await gave_up()
    assert await upstream_requests(emulator, "klines") == 1  # the one the others waited for


async def test_an_exchange_error_is_passed_on_as_it_came(start_proxy, emulator):
    proxy = await start_proxy()
    await add_fault(emulator, status=503, count=1, path="/api/v3/depth")
    base = proxy.base(emulator.url + "/api/v3")
    status, body, _ = await proxy.get(base, "/depth?symbol=BTCUSDT&limit=5")
    assert (status, body["code"]) == (503, -1001)
    assert (await proxy.get(base, "/depth?symbol=BTCUSDT&limit=5"))[0] == 200  # not kept
    assert proxy.counters()["errors"] == 0  # the exchange answered: not the proxy's failure


async def test_sizes_are_bounded(start_proxy, emulator):
    proxy = await start_proxy(ProxyConfig(max_request_bytes=1000, max_answer_bytes=10_000))
    base = proxy.base(emulator.url + "/api/v3")
    async with proxy.http.post(base + "/order", data=b"x" * 2000) as r:
        assert r.status == 413 and "limited to 1000 bytes" in (await r.json())["error"]
    status, body, _ = await proxy.get(base, "/exchangeInfo")  # about 80 kB for 50 markets
    assert status == 502 and "larger than 10000 bytes" in body["error"]
    assert (await proxy.get(base, "/depth?symbol=BTCUSDT&limit=5"))[0] == 200


async def test_requests_that_name_no_valid_upstream_are_refused(start_proxy):
    proxy = await start_proxy()
    root = f"http://127.0.0.1:{proxy.port}"
    for path in ("/api/v3/depth", "/e/binance/!!/depth", "/e/binance/Zm9vOi8vYmFy/depth"):
        status, body, _ = await proxy.get(root, path)
        assert status == 400 and body["error"].startswith("ftpool market data: "), path
