"""The agent's reading of its pool's market-data proxy's counters, for the heartbeat.

The proxy may run as a less privileged user than the agent: what it says is validated like
any frame (common/protocol/), bounded in size, and a proxy that does not answer within a
second is reported without figures.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import aiohttp
import structlog

from common.protocol import MarketDataStats, ProtocolError
from common.states import ProcessState

log = structlog.get_logger("agent.marketdata")
MAX_STATS_BYTES = 1 << 20
TIMEOUT = 1.0


class StatsReader:
    def __init__(self, socket: Path) -> None:
        self.socket = socket
        self._session: aiohttp.ClientSession | None = None

    async def read(self) -> MarketDataStats | None:
        """The proxy's counters (its state left RUNNING for the caller to set); None when it
        does not answer, or answers nonsense."""
        if self._session is None:
            connector = aiohttp.UnixConnector(path=str(self.socket))
            self._session = aiohttp.ClientSession(connector=connector)
        try:
            async with asyncio.timeout(TIMEOUT), self._session.get("http://proxy/stats") as r:
                raw = json.loads(await r.content.read(MAX_STATS_BYTES + 1))
            return MarketDataStats.from_wire({
                "state": ProcessState.RUNNING, "cache_bytes": raw["cache"]["bytes"],
                "cache_entries": raw["cache"]["entries"], "upstreams": raw["upstreams"],
            })  # fmt: skip
        except (TimeoutError, aiohttp.ClientError, OSError):
            return None  # starting, restarting, or gone: supervisord's state says which
        except (ValueError, KeyError, TypeError, ProtocolError) as exc:
            log.warning("market_data_stats_unreadable", error=str(exc)[:200])
            return None

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
