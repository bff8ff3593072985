"""`python -m agent.marketdata --port P`: a pool's market-data proxy (a supervisord program).

It serves the pool's bots on 127.0.0.1:P and, with --stats-socket, its counters as JSON on
a unix socket (`GET /stats`) for the agent's heartbeat: bots cannot reach that socket.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import sys
from pathlib import Path

import structlog
from aiohttp import web

from agent.marketdata.lifetime import Lifetimes
from agent.marketdata.proxy import MarketDataProxy, ProxyConfig
from agent.marketdata.table import ExchangeTable, TableError, load_tables
from common.logging import setup_logging

log = structlog.get_logger("marketdata")


def _positive(kind: type) -> object:
    def parse(raw: str) -> object:
        value = kind(raw)
        if value <= 0:
            raise argparse.ArgumentTypeError("must be positive")
        return value

    return parse


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m agent.marketdata", description=__doc__)
    p.add_argument("--port", type=int, required=True, help="TCP port on --host")
    p.add_argument("--host", default="127.0.0.1", help="address to serve bots on")
    p.add_argument("--quote-ttl-ms", type=int, default=2000, help="tickers, order books")
    p.add_argument("--candle-ttl-ms", type=int, default=5000, help="answers with an open candle")
    p.add_argument("--cache-bytes", type=_positive(int), default=64 << 20)
    p.add_argument("--upstream-timeout-ms", type=_positive(int), default=10_000)
    p.add_argument("--stats-socket", type=Path, help="unix socket serving GET /stats")
    p.add_argument("--log-level", default="info", choices=("debug", "info", "warning", "error"))
    args = p.parse_args(argv)
    if not 1 <= args.port <= 65535 or args.quote_ttl_ms < 0 or args.candle_ttl_ms < 0:
        p.error("--port must be a TCP port, the lifetimes zero or more")
    return args


async def serve(args: argparse.Namespace, tables: dict[str, ExchangeTable]) -> None:
    proxy = MarketDataProxy(
        tables,
        ProxyConfig(
            lifetimes=Lifetimes(args.quote_ttl_ms, args.candle_ttl_ms),
            cache_bytes=args.cache_bytes,
            upstream_timeout=args.upstream_timeout_ms / 1000,
        ),
    )
    runners = [web.AppRunner(proxy.app(), access_log=None, shutdown_timeout=2.0)]
    await runners[0].setup()
    await web.TCPSite(runners[0], args.host, args.port, reuse_address=True).start()
    if args.stats_socket is not None:
        runners.append(await _serve_stats(proxy, args.stats_socket))
    log.info("marketdata_listening", host=args.host, port=args.port, tables=sorted(proxy.tables))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    try:
        await stop.wait()
    finally:
        for runner in reversed(runners):
            await runner.cleanup()


async def _serve_stats(proxy: MarketDataProxy, path: Path) -> web.AppRunner:
    async def stats(_request: web.Request) -> web.Response:
        return web.Response(body=json.dumps(proxy.snapshot()), content_type="application/json")

    app = web.Application()
    app.router.add_get("/stats", stats)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.UnixSite(runner, str(path)).start()
    os.chmod(path, 0o600)
    return runner


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    setup_logging(args.log_level)
    if args.stats_socket is not None:
        with contextlib.suppress(FileNotFoundError):
            args.stats_socket.unlink()  # a previous run's
    try:
        tables = load_tables()
    except TableError as exc:
        print(f"ftpool market data: {exc}", file=sys.stderr)
        return 2
    try:
        asyncio.run(serve(args, tables))
    except OSError as exc:
        print(f"ftpool market data: cannot serve on port {args.port}: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
