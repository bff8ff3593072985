"""The controller's bot proxy against the bot itself and against nginx, on loopback.

    .venv/bin/python -m bench.proxy [--requests 2000] [--concurrency 16]
                                    [--bot trade|fake] [--paths ping,status,trades]

A real controller (local runtime, real supervisord and agent) runs one bot: a real trading
bot (`freqtrade trade --dry-run`, DemoStrategy, 20 pairs, against the exchange emulator,
measured once it has trades, so `/status` and `/trades` answer with real content), or with
`--bot fake` the small fake bot of the tests (tests/fakebot.py). Each of `--paths`, with
the same headers, goes three ways: straight to the bot (basic auth with the bot's own
credentials), through nginx as a plain reverse proxy (keep-alive upstream, installed with
apt-get when missing, run in the foreground from a generated config), and through the
controller's `/api/bots/{id}/<path>` with a user JWT. One load generator, in its own process,
measures each: latency at concurrency 1 (what a proxy adds to one request) and throughput
at `--concurrency`. The proxy under test (controller or nginx) runs on core 0; the bot and
the load generator on core 1, so the proxy has a core of its own, as it would in production.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import shutil
import subprocess
import sys
import tempfile
import time
from multiprocessing.connection import Connection
from pathlib import Path

import aiohttp

from bench.tools import LOAD_CPU, MEASURED_CPU, PORTS, percentile, pin
from common.logging import setup_logging
from tests.exchange import EmulatorProcess, trading_bot
from tests.support import (
    ControllerHarness,
    fakebot_pids,
    kill_pools,
    make_settings,
    user_token,
    wait_for,
)

CONTROLLER_PORT = PORTS.start + 200
NGINX_PORT = PORTS.start + 201
BOT_BASE_PORT = PORTS.start + 210
BOT = "bench-proxy"
NGINX_CONF = """
worker_processes 1;
pid {tmp}/nginx.pid;
error_log stderr warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    client_body_temp_path {tmp}/body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    upstream bot {{ server 127.0.0.1:{bot_port}; keepalive 64; }}
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://bot;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }}
    }}
}}
"""


# -- the controller (core 0) ------------------------------------------------------------


def controller(tmp: str, exchange_url: str | None, conn: Connection) -> None:
    pin(MEASURED_CPU)
    setup_logging("error")
    asyncio.run(_controller(Path(tmp), exchange_url, conn))


async def _controller(tmp: Path, exchange_url: str | None, conn: Connection) -> None:
    trading = {}
    if exchange_url is not None:
        freqtrade = Path(sys.executable).with_name("freqtrade")
        trading = {"BOT_COMMAND": f"{freqtrade} trade", "BOT_LAUNCH": "preload"}
    settings = make_settings(
        tmp, CONTROLLER_PORT=str(CONTROLLER_PORT), POOL_BASE_PORT=str(BOT_BASE_PORT), **trading
    )
    h = await ControllerHarness(settings).start()
    try:
        token = user_token("bench")
        body = trading_bot(exchange_url, BOT, 20) if exchange_url else {"instanceId": BOT}
        bot = await h.provision(token, **body)
        info = await h.wait_running(BOT, timeout=300)
        if exchange_url is not None:

            async def traded() -> bool:
                status, body = await h.call("GET", f"/api/bots/{BOT}/status", token)
                return status == 200 and bool(body)

            await wait_for(traded, 300, step=1)
        # The bot was forked under this process: move it to the load generator's core.
        bot_dir = settings.pools_dir / "pool-1" / "bots" / BOT
        for pid in fakebot_pids(bot_dir) or [info["process"]["pid"]]:
            os.sched_setaffinity(pid, {LOAD_CPU})
        api = json.loads((bot_dir / "config.json").read_text())["api_server"]
        basic = aiohttp.encode_basic_auth(api["username"], api["password"])
        conn.send((bot["port"], token, basic))
        await asyncio.to_thread(conn.recv)
    finally:
        await h.stop()
        kill_pools(tmp)


# -- nginx (core 0) -----------------------------------------------------------------------


def start_nginx(tmp: Path, bot_port: int) -> subprocess.Popen[bytes]:
    if shutil.which("nginx") is None:
        subprocess.run(["apt-get", "install", "-y", "-q", "nginx"], check=True)
    conf = tmp / "nginx.conf"
    conf.write_text(NGINX_CONF.format(tmp=tmp, bot_port=bot_port, port=NGINX_PORT))
    return subprocess.Popen(
        ["nginx", "-p", str(tmp), "-c", str(conf), "-g", "daemon off;"],
        preexec_fn=lambda: pin(MEASURED_CPU),
    )


async def wait_listening(url: str, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    async with aiohttp.ClientSession() as http:
        while True:
            try:
                async with http.get(url) as r:
                    if r.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            if time.monotonic() > deadline:
                raise SystemExit(f"{url} did not answer")
            await asyncio.sleep(0.1)


# -- the load generator (core 1) ----------------------------------------------------------


def generate(
    url: str, headers: dict[str, str], total: int, concurrency: int, conn: Connection
) -> None:
    pin(LOAD_CPU)
    conn.send(asyncio.run(_generate(url, headers, total, concurrency)))


async def _generate(
    url: str, headers: dict[str, str], total: int, concurrency: int
) -> tuple[list[float], float]:
    latencies: list[float] = []
    remaining = iter(range(total))
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector, headers=headers) as http:

        async def worker(requests: object) -> None:
            for _ in requests:  # type: ignore[attr-defined]
                started = time.perf_counter()
                async with http.get(url) as r:
                    await r.read()
                    if r.status != 200:
                        raise SystemExit(f"{url}: status {r.status}")
                latencies.append(time.perf_counter() - started)

        await asyncio.gather(*(worker(range(200 // concurrency)) for _ in range(concurrency)))
        latencies.clear()  # the warm-up: connections open, caches filled
        started = time.perf_counter()
        await asyncio.gather(*(worker(remaining) for _ in range(concurrency)))
        return latencies, time.perf_counter() - started


def load(
    url: str, headers: dict[str, str], total: int, concurrency: int
) -> tuple[list[float], float]:
    ctx = mp.get_context("spawn")
    mine, its = ctx.Pipe()
    proc = ctx.Process(target=generate, args=(url, headers, total, concurrency, its))
    proc.start()
    if not mine.poll(300):
        proc.kill()
        raise SystemExit(f"load on {url} did not finish")
    result = mine.recv()
    proc.join()
    return result


# -- the run --------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--bot", choices=("trade", "fake"), default="trade")
    parser.add_argument("--paths", default="ping,status,trades")
    args = parser.parse_args()
    args.paths = [p for p in args.paths.split(",") if p]
    if args.bot == "trade":
        with EmulatorProcess.start(markets=2000, weight_limit=0) as exchange:
            results = run(args, exchange.url)
    else:
        results = run(args, None)
    for path, figures in results.items():
        report(args, path, figures)


def run(args: argparse.Namespace, exchange_url: str | None) -> dict[str, dict]:
    ctx = mp.get_context("spawn")
    with tempfile.TemporaryDirectory(prefix="ftpool-bench-") as tmp:
        ours, theirs = ctx.Pipe()
        ctl = ctx.Process(target=controller, args=(tmp, exchange_url, theirs))
        ctl.start()
        if not ours.poll(600):
            raise SystemExit("the controller's bot did not start")
        bot_port, token, basic = ours.recv()
        print(f"controller pid {ctl.pid} (for py-spy)", flush=True)
        nginx_dir = Path(tmp) / "nginx"
        nginx_dir.mkdir()
        nginx = start_nginx(nginx_dir, bot_port)
        results: dict[str, dict] = {}
        try:
            asyncio.run(wait_listening(f"http://127.0.0.1:{NGINX_PORT}/api/v1/ping"))
            bearer = {"Authorization": f"Bearer {token}"}
            for path in args.paths:
                targets = {
                    "direct": (f"http://127.0.0.1:{bot_port}/api/v1/{path}", basic),
                    "nginx": (f"http://127.0.0.1:{NGINX_PORT}/api/v1/{path}", basic),
                    "ftpool": (f"http://127.0.0.1:{CONTROLLER_PORT}/api/bots/{BOT}/{path}",
                               bearer["Authorization"]),
                }  # fmt: skip
                results[path] = {
                    name: (load(url, {"Authorization": auth}, args.requests // 4, 1),
                           load(url, {"Authorization": auth}, args.requests, args.concurrency))
                    for name, (url, auth) in targets.items()
                }  # fmt: skip
        finally:
            nginx.terminate()
            nginx.wait(10)
            ours.send("stop")
            ctl.join(60)
    return results


def report(
    args: argparse.Namespace,
    path: str,
    results: dict[str, tuple[tuple[list[float], float], tuple[list[float], float]]],
) -> None:
    bot = "a trading bot" if args.bot == "trade" else "the fake bot"
    print(f"bench/proxy: GET /api/v1/{path} of {bot}; {args.requests // 4} requests one at a "
          f"time, {args.requests} at {args.concurrency} concurrent")  # fmt: skip
    print(f"{'':8}{'c=1 p50':>10}{'c=1 p99':>10}{'req/s':>10}{'p50':>9}{'p99':>9}")
    medians, rates = {}, {}
    for name, ((single, _), (many, elapsed)) in results.items():
        ms1 = [x * 1000 for x in single]
        ms = [x * 1000 for x in many]
        medians[name], rates[name] = percentile(ms1, 50), len(ms) / elapsed
        print(f"{name:8}{medians[name]:>8.3f}ms{percentile(ms1, 99):>8.3f}ms{rates[name]:>10.0f}"
              f"{percentile(ms, 50):>7.2f}ms{percentile(ms, 99):>7.2f}ms")  # fmt: skip
    for name in ("nginx", "ftpool"):
        print(f"{name} adds {medians[name] - medians['direct']:.3f} ms at p50 (concurrency 1)")
    print(f"ftpool throughput is {rates['ftpool'] / rates['nginx']:.2f}x nginx's")


if __name__ == "__main__":
    main()
