"""The offline demo: trading bots in a pool, with no exchange account and no internet.

    make demo          # or: .venv/bin/python -m tests.demo [--bots 3] [--port 5000]

Starts the exchange emulator (`python -m tests.exchange`) and a controller (local runtime,
data in ./demo-data), provisions a few dry-run `freqtrade trade` bots with the DemoStrategy
against the emulator, waits until they trade, prints how to look at them, and keeps
everything running until Ctrl-C, which stops the controller, the pools and the emulator.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import signal
import sys
from pathlib import Path

import aiohttp

from tests.exchange import EmulatorProcess, trading_bot
from tests.support import kill_pools, wait_for

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "demo-data"


async def start_controller(port: int) -> asyncio.subprocess.Process:
    freqtrade = Path(sys.executable).with_name("freqtrade")
    env = {
        **os.environ,
        "BOT_BASE_DIR": str(DATA),
        "CONTROLLER_PORT": str(port),
        "BOT_COMMAND": f"{freqtrade if freqtrade.exists() else 'freqtrade'} trade",
        "LOG_LEVEL": "warning",
    }
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "controller", env=env, cwd=ROOT, stdout=asyncio.subprocess.DEVNULL
    )


async def provision(base: str, token: str, exchange: EmulatorProcess, bots: list[str]) -> None:
    headers = {"Authorization": f"Bearer {token}"}
    async with aiohttp.ClientSession(base, headers=headers) as http:
        for bot in bots:
            async with http.post("/api/bots", json=trading_bot(exchange.url, bot, 5)) as r:
                if r.status not in (201, 409):  # 409: kept from an earlier demo
                    raise RuntimeError(f"provisioning {bot}: {r.status} {await r.text()}")

        async def trading() -> bool:
            for bot in bots:
                async with http.get(f"/api/bots/{bot}/status") as r:  # its open trades
                    if r.status != 200 or not await r.json():
                        return False
            return True

        print("waiting for the bots to start and open their first dry-run trades...")
        await wait_for(trading, 300, step=2)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bots", type=int, default=3)
    parser.add_argument("--port", type=int, default=5000)
    parser.add_argument("--fresh", action="store_true", help="start from an empty ./demo-data")
    args = parser.parse_args()
    if args.fresh:
        shutil.rmtree(DATA, ignore_errors=True)
    exchange = EmulatorProcess.start(markets=2000)
    controller = await start_controller(args.port)
    base = f"http://127.0.0.1:{args.port}"
    try:
        await wait_for(lambda: (DATA / "admin-token").exists(), 30)
        token = (DATA / "admin-token").read_text().strip()
        bots = [f"demo-{i}" for i in range(1, args.bots + 1)]
        await provision(base, token, exchange, bots)
        print(f"""
{len(bots)} bots trade against the exchange emulator at {exchange.url}.
  TOKEN=$(cat {DATA / "admin-token"})
  curl -s -H "Authorization: Bearer $TOKEN" {base}/api/bots | python3 -m json.tool
  curl -s -H "Authorization: Bearer $TOKEN" {base}/api/bots/{bots[0]}/status
  curl -s -H "Authorization: Bearer $TOKEN" {base}/api/bots/{bots[0]}/profit
  curl -s {exchange.url}/_emulator/stats
Or with the command-line client (docs/cli.md):
  export FTPOOL_URL={base} FTPOOL_TOKEN_FILE={DATA / "admin-token"}
  .venv/bin/ftpool bots ls; .venv/bin/ftpool bots logs {bots[0]} -f; .venv/bin/ftpool events -f
FreqUI or freqtrade-client: {base}/bots/{bots[0]} (user admin, password: the token).
Ctrl-C stops the controller, the pools and the emulator.""")
        stop = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGINT, stop.set)
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
        await stop.wait()
    finally:
        controller.terminate()
        await controller.wait()
        kill_pools(DATA)
        exchange.stop()


if __name__ == "__main__":
    asyncio.run(main())
