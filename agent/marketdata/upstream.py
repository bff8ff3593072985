"""Requests to the exchange: one client session, bounded time and size, clear failures.

URLs are sent as the bot encoded them (`yarl.URL(..., encoded=True)`): a signature covers
the query string byte for byte, parameter order included. No cookie jar: nothing one bot's
answer sets reaches another bot. Failures are UpstreamError, answered to the bot as 502
(unreachable, broken or too large answer) or 504 (too slow), never as a hang.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterable, Mapping

import aiohttp
from multidict import CIMultiDict
from yarl import URL

from agent.marketdata.cache import Answer

# Never forwarded in either direction: they describe one connection, not the message, or
# no longer fit it (the proxy hands bots decompressed bodies with lengths of its own).
HOP_BY_HOP = frozenset(h.lower() for h in (
    "Connection", "Keep-Alive", "Proxy-Authenticate", "Proxy-Authorization", "Proxy-Connection",
    "TE", "Trailer", "Trailers", "Transfer-Encoding", "Upgrade", "Host", "Content-Length",
    "Content-Encoding", "Accept-Encoding", "Date", "Server",
))  # fmt: skip
# What a shared (public) answer keeps of the exchange's headers: nothing set for one client.
PUBLIC_HEADERS = ("Content-Type", "Retry-After")


class UpstreamError(Exception):
    """The exchange could not be asked or did not answer usably."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status

    def answer(self) -> Answer:
        return error_answer(self.status, str(self))


def error_answer(
    status: int, message: str, code: int | None = None, retry_after: int = 0
) -> Answer:
    """An answer made by the proxy itself; with `code`, in the exchange's error shape
    ({"code", "msg"}) so that its ccxt class reads it like the exchange's own."""
    text = f"ftpool market data: {message}"
    body = {"code": code, "msg": text} if code is not None else {"error": text}
    headers = [("Content-Type", "application/json")]
    if retry_after:
        headers.append(("Retry-After", str(retry_after)))
    return Answer(status, tuple(headers), json.dumps(body).encode())


def header(answer: Answer, name: str) -> str | None:
    lowered = name.lower()
    return next((v for k, v in answer.headers if k.lower() == lowered), None)


def forwarded(headers: Mapping[str, str]) -> CIMultiDict[str]:
    """A bot's request headers as they go on to the exchange (its key among them)."""
    return CIMultiDict((k, v) for k, v in headers.items() if k.lower() not in HOP_BY_HOP)


def _kept(headers: Iterable[tuple[str, str]], keep: tuple[str, ...] | None) -> tuple:
    if keep is None:
        return tuple((k, v) for k, v in headers if k.lower() not in HOP_BY_HOP)
    wanted = {k.lower() for k in keep}
    return tuple((k, v) for k, v in headers if k.lower() in wanted)


class Upstream:
    def __init__(self, timeout: float, max_answer_bytes: int) -> None:
        self.timeout = timeout
        self.max_answer_bytes = max_answer_bytes
        self._session: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self.timeout),
                connector=aiohttp.TCPConnector(limit=256, ttl_dns_cache=300),
                cookie_jar=aiohttp.DummyCookieJar(),
                auto_decompress=True,
            )
        return self._session

    async def fetch(
        self, method: str, url: str, headers: Mapping[str, str], body: bytes | None,
        keep: tuple[str, ...] | None,
    ) -> Answer:  # fmt: skip
        """The exchange's answer, with the headers in `keep` (None: all but hop-by-hop)."""
        try:
            async with asyncio.timeout(self.timeout):
                return await self._fetch(method, url, headers, body, keep)
        except TimeoutError:
            raise UpstreamError(504, f"no answer within {self.timeout:g} s") from None
        except (aiohttp.ClientError, OSError, ValueError) as exc:
            # The exception's text can hold the URL (and so a query): only its kind is said.
            raise UpstreamError(502, f"upstream unreachable ({type(exc).__name__})") from None

    async def _fetch(
        self, method: str, url: str, headers: Mapping[str, str], body: bytes | None,
        keep: tuple[str, ...] | None,
    ) -> Answer:  # fmt: skip
        async with self._client().request(
            method, URL(url, encoded=True), headers=headers, data=body or None,
            allow_redirects=False,
        ) as response:  # fmt: skip
            length = response.content_length
            if length is not None and length > self.max_answer_bytes:
                raise UpstreamError(502, f"answer larger than {self.max_answer_bytes} bytes")
            chunks, size = [], 0
            async for chunk in response.content.iter_chunked(1 << 16):
                size += len(chunk)
                if size > self.max_answer_bytes:
                    raise UpstreamError(502, f"answer larger than {self.max_answer_bytes} bytes")
                chunks.append(chunk)
            return Answer(response.status, _kept(response.headers.items(), keep), b"".join(chunks))

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
