"""The market-data proxy: one pool's bots' exchange requests, shared where they may be.

A request names its upstream in its path (agent/marketdata/address.py). If its exchange
has a table, it is a GET of a tabled endpoint, and it carries nothing private (a signature,
an API key header, a body), it is public: answered from the cache, or by the one upstream
request already in flight for the same URL and parameters, or by a new one (if the budget
allows), whose answer is cached for as long as it is valid. Anything else passes through:
sent as it came, answered as the exchange answered, never cached, never shared, never
logged beyond its method and path. Both kinds count against the origin's budget.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

import structlog
from aiohttp import web

from agent.marketdata import budget as budgets
from agent.marketdata.address import BadUpstream, Target, target
from agent.marketdata.budget import Budget, Verdict
from agent.marketdata.cache import Answer, AnswerCache, Key
from agent.marketdata.lifetime import Lifetimes, expires_at
from agent.marketdata.stats import Counters, Stats, forget_idle
from agent.marketdata.table import Endpoint, ExchangeTable
from agent.marketdata.upstream import (
    PUBLIC_HEADERS,
    Upstream,
    UpstreamError,
    error_answer,
    forwarded,
    header,
)

log = structlog.get_logger("marketdata")


@dataclass(frozen=True, slots=True)
class ProxyConfig:
    lifetimes: Lifetimes = field(default_factory=Lifetimes)
    cache_bytes: int = 64 << 20
    upstream_timeout: float = 10.0  # seconds; ccxt's own default timeout is 10 s
    max_request_bytes: int = 1 << 20
    max_answer_bytes: int = 64 << 20


class MarketDataProxy:
    def __init__(
        self, tables: Mapping[str, ExchangeTable], config: ProxyConfig,
        clock: Callable[[], float] = time.time,
    ) -> None:  # fmt: skip
        """`clock`: wall-clock seconds (lifetimes and budgets follow the exchange's time)."""
        self.tables = tables
        self.config = config
        self.clock = clock
        self.cache = AnswerCache(config.cache_bytes)
        self.budgets: dict[str, Budget] = {}
        self.stats = Stats()
        self.upstream = Upstream(config.upstream_timeout, config.max_answer_bytes)
        self._flights: dict[Key, asyncio.Future[Answer]] = {}

    def app(self) -> web.Application:
        app = web.Application(client_max_size=self.config.max_request_bytes)
        app.router.add_route("*", "/{tail:.*}", self.handle)
        app.on_cleanup.append(lambda _app: self.upstream.close())
        return app

    def snapshot(self) -> dict[str, Any]:
        now = self.clock()
        return self.stats.snapshot(self.budgets, now, self.cache.bytes, len(self.cache))

    async def handle(self, request: web.Request) -> web.Response:
        try:
            where = target(request.raw_path)
        except BadUpstream as exc:
            return _response(error_answer(400, str(exc)))
        counters = self.stats.of(where.exchange, where.origin)
        counters.requests += 1
        try:
            body = await request.read()
        except web.HTTPRequestEntityTooLarge:
            limit = self.config.max_request_bytes
            return _response(error_answer(413, f"request bodies are limited to {limit} bytes"))
        pairs = parse_qsl(where.query, keep_blank_values=True)
        params = dict(pairs)
        table = self.tables.get(where.exchange)
        signed = table is not None and table.is_private(params, request.headers)
        shared = table is not None and request.method == "GET" and not body and not signed
        endpoint = table.endpoint(where.path) if shared and table is not None else None
        if endpoint is None or table is None:
            answer = await self._pass_through(request, where, table, body, counters, signed)
        else:
            key = (where.url.partition("?")[0], tuple(sorted(pairs)))
            answer = await self._public(request, where, table, endpoint, key, params, counters)
        return _response(answer)

    # -- public: shared ----------------------------------------------------------------

    async def _public(
        self, request: web.Request, where: Target, table: ExchangeTable, endpoint: Endpoint,
        key: Key, params: dict[str, str], counters: Counters,
    ) -> Answer:  # fmt: skip
        now = self.clock()
        cached = self.cache.get(key, now)
        if cached is not None:
            counters.hits += 1
            return cached
        flight = self._flights.get(key)
        if flight is not None:
            counters.coalesced += 1
            return await asyncio.shield(flight)
        weight = endpoint.weight.of(params)
        verdict = self._decide(where.origin, table, now, weight, public=True)
        if not verdict.allowed:
            counters.refused += 1
            return _refusal(verdict, where, table)
        headers = {k: v for k, v in request.headers.items() if k.lower() == "user-agent"}
        flight = asyncio.ensure_future(
            self._fetch_public(where, table, endpoint, key, params, headers, weight, counters)
        )
        self._flights[key] = flight
        flight.add_done_callback(lambda done: self._landed(key, done))
        return await asyncio.shield(flight)

    def _landed(self, key: Key, flight: asyncio.Future[Answer]) -> None:
        if self._flights.get(key) is flight:
            del self._flights[key]

    async def _fetch_public(
        self, where: Target, table: ExchangeTable, endpoint: Endpoint, key: Key,
        params: dict[str, str], headers: dict[str, str], weight: int, counters: Counters,
    ) -> Answer:  # fmt: skip
        keep = (*PUBLIC_HEADERS, table.budget.used_weight_header)
        answer = await self._send(where, table, "GET", headers, None, weight, keep, counters)
        if answer.status == 200:
            now = self.clock()
            lifetime = expires_at(endpoint, params, answer.body, now, self.config.lifetimes)
            self.cache.put(key, answer, lifetime, now)
        return answer

    # -- private or unknown: passed through ---------------------------------------------

    async def _pass_through(
        self, request: web.Request, where: Target, table: ExchangeTable | None, body: bytes,
        counters: Counters, signed: bool,
    ) -> Answer:  # fmt: skip
        log.debug("pass_through", method=request.method, origin=where.origin, path=where.path)
        if table is not None:
            verdict = self._decide(where.origin, table, self.clock(), 0, public=False)
            if not verdict.allowed:
                counters.refused += 1
                return _refusal(verdict, where, table)
        counters.passthrough += 1
        headers = forwarded(request.headers)
        return await self._send(where, table, request.method, headers, body, 0, None, counters,
                                signed=signed)  # fmt: skip

    # -- both ---------------------------------------------------------------------------

    async def _send(
        self, where: Target, table: ExchangeTable | None, method: str,
        headers: Mapping[str, str], body: bytes | None, weight: int,
        keep: tuple[str, ...] | None, counters: Counters, signed: bool = False,
    ) -> Answer:  # fmt: skip
        counters.upstream += 1
        counters.weight += weight
        if table is not None:
            self._charge(where.origin, weight)
        try:
            answer = await self.upstream.fetch(method, where.url, headers, body, keep)
        except UpstreamError as exc:
            counters.errors += 1
            log.warning("upstream_failed", method=method, origin=where.origin, path=where.path,
                        status=exc.status, error=str(exc))  # fmt: skip
            return exc.answer()
        if table is not None:
            self._observe(where, table, answer, signed)
        return answer

    def _decide(self, origin: str, table: ExchangeTable, now: float, weight: int,
                public: bool) -> Verdict:  # fmt: skip
        return budgets.decide(self.budgets.get(origin, Budget()), table.budget, now, weight,
                              public)  # fmt: skip

    def _charge(self, origin: str, weight: int) -> None:
        now = self.clock()
        forget_idle(self.budgets, now)
        self.budgets[origin] = budgets.charged(self.budgets.get(origin, Budget()), now, weight)

    def _observe(self, where: Target, table: ExchangeTable, answer: Answer, signed: bool) -> None:
        before = self.budgets.get(where.origin, Budget())
        now = self.clock()
        name = table.budget.used_weight_header
        used = header(answer, name) if name else None
        after = budgets.answered(before, now, answer.status, used, header(answer, "Retry-After"),
                                 signed)  # fmt: skip
        self.budgets[where.origin] = after
        if after.backoffs > before.backoffs:
            seconds = round(after.backoff_until - now, 1)
            log.warning("upstream_backoff", exchange=where.exchange, origin=where.origin,
                        status=after.backoff_status, seconds=seconds)  # fmt: skip


def _refusal(verdict: Verdict, where: Target, table: ExchangeTable) -> Answer:
    message = f"{where.origin}: {verdict.reason}; retry after {verdict.retry_after} s"
    return error_answer(verdict.status, message, table.budget.error_code, verdict.retry_after)


def _response(answer: Answer) -> web.Response:
    return web.Response(status=answer.status, body=answer.body, headers=answer.headers)
