"""The bot proxy: FreqTrade's REST API of every bot, behind the controller's own auth.

Two prefixes reach a bot's `/api/v1/<path>`:
- `/api/bots/{instanceId}/<path>` (the seed's route; lifecycle verbs take precedence),
- `/bots/{instanceId}/api/v1/<path>` (a complete bot URL for FreqUI and freqtrade-client).

The caller authenticates as a controller user; the controller injects the bot's
own credentials upstream, so the bot's password never leaves the controller.
FreqTrade's login and refresh are answered by the controller with its own tokens
(controller/api/bot_tokens.py), registered before these routes.
"""

from __future__ import annotations

import asyncio
import time
import weakref
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import unquote

import aiohttp
import structlog
from aiohttp import WSMsgType, web
from multidict import CIMultiDict
from yarl import URL

from common.ids import InvalidId
from common.states import RunState
from controller.api.middleware import AUTHENTICATOR, json_error, public
from controller.api.spec import BOT_CLIENT, USER, Operations, op
from controller.auth import Principal
from controller.bots.manager import BotManager
from controller.errors import BotUnavailable, FtpoolError, PayloadTooLarge
from controller.health.status import serves
from controller.metrics import Metrics
from controller.records import BotRecord

log = structlog.get_logger("controller.api.proxy")
HOP_BY_HOP = frozenset({
    "connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailer",
    "trailers", "transfer-encoding", "upgrade", "host", "authorization", "cookie",
})  # fmt: skip
_STREAM_CHUNK = 64 * 1024
_PASSED = {"description": "FreqTrade's own answer, passed through", "content": {"*/*": {}}}
# A status both the controller (its JSON error) and the bot (anything) may answer.
_EITHER = {
    "description": "the controller's JSON error (400: a bad path, 403: not your bot, 404: no "
    "such bot, 413: body too large, 502/504: the bot unreachable or silent, 503: the bot is "
    "not running), or the bot's own answer",
    "content": {"*/*": {}},
}
_PROXY_ANSWERS = {200: _PASSED, **dict.fromkeys((400, 403, 404, 413, 502, 503, 504), _EITHER),
                  "default": _PASSED}  # fmt: skip
OPERATIONS: Operations = {
    ("*", "/bots/{instanceId}/api/v1/{tail}"): op(
        "the bot's FreqTrade REST API /api/v1/{tail}, passed through", security=BOT_CLIENT,
        tags=("bot proxy",), ok=_PROXY_ANSWERS,
        description="Any method, query and body is streamed to a running bot with its own "
        "credentials. Its errors are JSON (503: the bot is not running); the bot's own are "
        "passed as they are. "
        "message/ws takes the access token in ?token=.",
    ),
    ("*", "/api/bots/{instanceId}/{tail}"): op(
        "the bot's FreqTrade REST API /api/v1/{tail}, passed through", security=USER,
        tags=("bot proxy",), ok=_PROXY_ANSWERS,
        description="As under /bots/{instanceId}/api/v1/, bearer tokens only; the lifecycle "
        "routes take precedence and token/* is not reachable (404).",
    ),
}  # fmt: skip


def _hop_by_hop(headers: Any) -> frozenset[str]:
    """HOP_BY_HOP plus the headers a message's Connection header names (RFC 9110 7.6.1)."""
    named = {
        token.strip().lower()
        for value in headers.getall("Connection", ())
        for token in value.split(",")
        if token.strip()
    }
    return HOP_BY_HOP | named


class APIProxy:
    operations = OPERATIONS

    def __init__(
        self, bots: BotManager, *, timeout: float, max_body: int, metrics: Metrics
    ) -> None:
        self.metrics = metrics
        self.bots = bots
        self.pools = bots.pools
        self.timeout = timeout
        self.max_body = max_body
        self._session: aiohttp.ClientSession | None = None
        self._websockets: weakref.WeakSet[web.WebSocketResponse] = weakref.WeakSet()

    def routes(self) -> list[web.RouteDef]:
        return [
            web.route("*", "/bots/{instanceId}/api/v1/{tail:.*}", self.proxy),
            web.route("*", "/api/bots/{instanceId}/{tail:.+}", self.proxy),
        ]

    async def startup(self, _app: web.Application) -> None:
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=0, limit_per_host=64, keepalive_timeout=30),
            auto_decompress=False,
            # Never keep cookies: the session is shared by every user of the controller.
            cookie_jar=aiohttp.DummyCookieJar(),
        )

    async def close_websockets(self, _app: web.Application) -> None:
        for ws in list(self._websockets):
            await ws.close(code=1001, message=b"controller shutting down")

    async def shutdown(self, _app: web.Application) -> None:
        if self._session is not None:
            await self._session.close()

    # -- the proxy ----------------------------------------------------------------

    def _tail(self, request: web.Request) -> str:
        """The raw (still percent-encoded) path after /api/v1/, refusing dot segments."""
        raw_path = request.raw_path.split("?", 1)[0]
        bot_id = request.match_info["instanceId"]
        prefix = (
            f"/bots/{bot_id}/api/v1/" if raw_path.startswith("/bots/") else f"/api/bots/{bot_id}/"
        )
        if not raw_path.startswith(prefix):
            raise web.HTTPBadRequest(reason="path not understood")
        tail = raw_path[len(prefix) :]
        if any(seg in (".", "..") for seg in unquote(tail).split("/")):
            raise web.HTTPBadRequest(reason="dot segments are not allowed in bot paths")
        return tail

    def _caller(self, request: web.Request, tail: str) -> Principal:
        if tail == "message/ws" and "token" in request.query:
            # Browsers cannot set headers on WebSockets; FreqUI passes its token in the query.
            return request.app[AUTHENTICATOR].bearer(request.query["token"])
        return request.app[AUTHENTICATOR].from_header(
            request.headers.get("Authorization"), allow_basic=request.path.startswith("/bots/")
        )

    @public
    async def proxy(self, request: web.Request) -> web.StreamResponse:
        started = time.perf_counter()
        # Refusals are raised and answered by the error middleware: count their status too.
        status = 500
        try:
            response = await self._proxy(request)
            status = response.status
            return response
        except (FtpoolError, web.HTTPException) as exc:
            status = exc.status
            raise
        except InvalidId:
            status = 400
            raise
        finally:
            self.metrics.proxied(status, time.perf_counter() - started)

    async def _proxy(self, request: web.Request) -> web.StreamResponse:
        tail = self._tail(request)
        if tail.startswith("token/"):
            # FreqTrade's own tokens for the bot must never reach a caller; the controller
            # answers login and refresh itself under /bots/{instanceId}/api/v1/token/.
            raise web.HTTPNotFound(reason="use /bots/{instanceId}/api/v1/token/login or refresh")
        caller = self._caller(request, tail)
        bot = self.bots.get(caller, request.match_info["instanceId"])
        status = self.pools.registry.status_of(bot)
        # Only a bot its agent saw up gets traffic (and so its credentials): before its own
        # process answers, or while it backs off, its port may not be its own.
        if bot.deleting or bot.held or bot.run == RunState.STOPPED or not serves(status):
            raise BotUnavailable(f"bot {bot.id} is not running")
        assert status is not None
        if status.port_ok is False:
            # Another user's process holds the bot's port: it must not get the credentials.
            raise BotUnavailable(f"bot {bot.id}'s port is held by another process")
        host = self.pools.runtime.bot_host(bot.pool_id)
        # The raw query: decoding it would turn %26 into a parameter separator (or a space
        # into a broken request line) on its way to the bot.
        raw_query = request.rel_url.raw_query_string
        query = f"?{raw_query}" if raw_query else ""
        if tail == "message/ws" and request.headers.get("Upgrade", "").lower() == "websocket":
            url = URL(f"ws://{host}:{bot.port}/api/v1/message/ws", encoded=True)
            return await self._websocket(request, bot, url)
        url = URL(f"http://{host}:{bot.port}/api/v1/{tail}{query}", encoded=True)
        return await self._http(request, bot, url)

    async def _body(self, request: web.Request, overflow: list[bool]) -> AsyncIterator[bytes]:
        total = 0
        async for chunk in request.content.iter_chunked(_STREAM_CHUNK):
            total += len(chunk)
            if total > self.max_body:
                # aiohttp reports an error raised here as a client connection error;
                # the flag lets _http answer 413 instead of blaming the bot.
                overflow.append(True)
                raise PayloadTooLarge(f"body larger than {self.max_body} bytes")
            yield chunk

    async def _http(self, request: web.Request, bot: BotRecord, url: URL) -> web.StreamResponse:
        assert self._session is not None
        if (request.content_length or 0) > self.max_body:
            raise PayloadTooLarge(f"body larger than {self.max_body} bytes")
        drop = _hop_by_hop(request.headers)
        headers = _kept(request.headers, drop)
        headers["Authorization"] = bot.secrets.basic_auth()
        overflow: list[bool] = []
        data: Any = self._body(request, overflow) if request.body_exists else None
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=5, sock_read=self.timeout)
        response: web.StreamResponse | None = None
        try:
            async with self._session.request(
                request.method, url, headers=headers, data=data, timeout=timeout,
                allow_redirects=False,
            ) as upstream:  # fmt: skip
                drop = _hop_by_hop(upstream.headers) | {"set-cookie"}
                length = upstream.content_length
                if request.method != "HEAD" and length is not None and length <= _STREAM_CHUNK:
                    # Most of FreqTrade's answers are small: read whole, they leave in one
                    # write instead of three (headers, body, end), the proxy's main cost.
                    body = await upstream.read()
                    return web.Response(
                        status=upstream.status, reason=upstream.reason, body=body,
                        headers=_kept(upstream.headers, drop | {"content-length"}),
                    )  # fmt: skip
                response = web.StreamResponse(
                    status=upstream.status, reason=upstream.reason,
                    headers=_kept(upstream.headers, drop),
                )  # fmt: skip
                await response.prepare(request)
                async for chunk in upstream.content.iter_chunked(_STREAM_CHUNK):
                    await response.write(chunk)
                await response.write_eof()
                return response
        except (TimeoutError, aiohttp.ClientError) as exc:
            if response is not None and response.prepared:
                # The status and part of the body are out: a JSON error now would be glued
                # into the body. Cutting the connection is the only honest signal left.
                log.warning("bot_response_cut", bot=bot.id, pool=bot.pool_id,
                            error=type(exc).__name__)  # fmt: skip
                if request.transport is not None:
                    request.transport.abort()
                return response
            if overflow:
                raise PayloadTooLarge(f"body larger than {self.max_body} bytes") from None
            if isinstance(exc, TimeoutError | aiohttp.ServerTimeoutError):
                return json_error(504, f"bot {bot.id} did not answer in time")
            if isinstance(exc, aiohttp.ClientConnectorError):
                return json_error(502, f"bot {bot.id} is not reachable")
            return json_error(502, f"bot {bot.id} answered badly: {type(exc).__name__}")

    async def _websocket(
        self, request: web.Request, bot: BotRecord, url: URL
    ) -> web.StreamResponse:
        assert self._session is not None
        try:
            upstream = await self._session.ws_connect(
                url.with_query(token=bot.secrets.ws_token), timeout=aiohttp.ClientWSTimeout(10)
            )
        except (TimeoutError, aiohttp.ClientError):
            return json_error(502, f"bot {bot.id} message stream is not reachable")
        client = web.WebSocketResponse(heartbeat=30)
        try:
            await client.prepare(request)
        except BaseException:
            await upstream.close()
            raise
        self._websockets.add(client)
        try:
            await relay(upstream, client, bot.id)
        finally:
            await upstream.close()
            await client.close()
        return client


async def relay(upstream: Any, client: Any, bot_id: str) -> None:
    """Pass messages both ways until either side ends, then stop the other direction.

    Both pumps are awaited to their end, so an error of either (a side that went away
    mid-send) is retrieved and logged, by its type only: the upstream URL holds the bot's
    token."""
    pumps = [asyncio.create_task(_pump(upstream, client)),
             asyncio.create_task(_pump(client, upstream))]  # fmt: skip
    try:
        await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for pump in pumps:
            pump.cancel()
        for outcome in await asyncio.gather(*pumps, return_exceptions=True):
            if isinstance(outcome, Exception):
                log.info("bot_ws_relay_ended", bot=bot_id, error=type(outcome).__name__)


async def _pump(source: Any, sink: Any) -> None:
    async for msg in source:
        if msg.type == WSMsgType.TEXT:
            await sink.send_str(msg.data)
        elif msg.type == WSMsgType.BINARY:
            await sink.send_bytes(msg.data)
        else:
            break


def _kept(headers: Any, drop: frozenset[str]) -> CIMultiDict[str]:
    return CIMultiDict((k, v) for k, v in headers.items() if k.lower() not in drop)
