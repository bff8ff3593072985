"""Whether the pool's helper programs are ready for bots: a new preloader listening on its
socket, the market-data proxy holding its port. Bounded waits: a bot started before its
helper is ready runs unshared, or begins with failed requests."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

import structlog

from agent.marketdata.holder import Holder, ProxyPort
from agent.programs import MARKET_DATA, ProgramOptions
from agent.supervisor import SupervisorClient
from common.states import ProcessState

_UP = frozenset({ProcessState.STARTING, ProcessState.RUNNING})

log = structlog.get_logger("agent.reconcile")
MARKET_DATA_WAIT = 15.0  # seconds a new market-data proxy may take to listen


async def listening(
    connect: Callable[[], Awaitable[tuple[asyncio.StreamReader, asyncio.StreamWriter]]],
    timeout: float,
) -> bool:
    """Whether something listens where `connect` connects, within `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            _reader, writer = await connect()
        except OSError:
            await asyncio.sleep(0.2)
            continue
        writer.close()
        return True
    return False


async def wait_for_preloader(options: ProgramOptions) -> None:
    """Until a new preloader has imported FreqTrade and listens (bounded): bots started
    before that would give up waiting for it and run unshared."""
    path = options.preloader_socket
    if path is not None and not await listening(
        lambda: asyncio.open_unix_connection(str(path)), options.preloader_wait
    ):
        log.warning("preloader_not_ready", timeout=options.preloader_wait)


async def proxy_holds_port(supervisor: SupervisorClient, proxy_port: ProxyPort | None) -> bool:
    """Whether the market-data proxy supervisord runs holds its port now (every socket
    listening there is its own): only then are bots routed through it."""
    if proxy_port is None:
        return False
    info = (await supervisor.all_processes()).get(MARKET_DATA)
    pid = info.pid if info is not None and info.state in _UP else 0
    return (await asyncio.to_thread(proxy_port.check, pid)).holder == Holder.PROXY


async def wait_for_market_data(supervisor: SupervisorClient, proxy_port: ProxyPort | None) -> bool:
    """Until a new market-data proxy holds its port (bounded; not while a stranger
    holds it): bots started before it would begin with failed requests. Whether it
    does."""
    deadline = time.monotonic() + MARKET_DATA_WAIT
    while proxy_port is not None and time.monotonic() < deadline:
        if await proxy_holds_port(supervisor, proxy_port):
            return True
        if proxy_port.verdict.holder == Holder.STRANGER:
            break
        await asyncio.sleep(0.2)
    port = proxy_port.port if proxy_port is not None else None
    log.warning("market_data_proxy_not_ready", port=port, timeout=MARKET_DATA_WAIT)
    return False
