"""How a bot's request names its upstream: the proxy is stateless, the URL says it all.

ccxt builds a request's URL as `urls.api[key] + "/" + path + "?" + query`. The agent sets
`urls.api[key]` to

    http://127.0.0.1:<port>/e/<exchange>/<upstream base, base64url without padding>

so the proxy receives `/e/<exchange>/<token>/<path>?<query>` and sends
`<upstream base>/<path>?<query>`: exactly the URL ccxt would have sent without it, byte for
byte (signatures cover the query as sent). Nothing is registered anywhere, so a proxy that
restarts serves the next request as the last, and a bot keeps its configuration.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass

from yarl import URL

from agent.marketdata.table import EXCHANGE_ID

PREFIX = "/e/"
MAX_UPSTREAM = 512  # characters of an upstream base URL
_TOKEN = re.compile(r"[A-Za-z0-9_-]{4,700}")
_CONTROL = re.compile(r"[\x00-\x20\x7f]")


class BadUpstream(ValueError):
    """An upstream base URL or a request path the proxy does not accept."""


def check_upstream(url: str) -> URL:
    """An upstream base: http(s), a host, no credentials, query or fragment, bounded."""
    if not isinstance(url, str) or not 0 < len(url) <= MAX_UPSTREAM or _CONTROL.search(url):
        raise BadUpstream("an upstream is a URL of up to 512 printable characters")
    try:
        parsed = URL(url, encoded=True)
    except ValueError:
        raise BadUpstream("an upstream must be a valid URL") from None
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise BadUpstream("an upstream must be an http or https URL with a host")
    if parsed.user is not None or parsed.password is not None:
        raise BadUpstream("an upstream must not carry credentials")
    if parsed.raw_query_string or parsed.raw_fragment or "?" in url or "#" in url:
        raise BadUpstream("an upstream must not have a query or fragment")
    return parsed


def proxy_base(port: int, exchange: str, upstream: str) -> str:
    """What the agent writes into a bot's `urls.api[key]` for this upstream."""
    check_upstream(upstream)
    if not EXCHANGE_ID.fullmatch(exchange):
        raise BadUpstream(f"exchange must match {EXCHANGE_ID.pattern}")
    token = base64.urlsafe_b64encode(upstream.encode()).rstrip(b"=").decode()
    return f"http://127.0.0.1:{port}{PREFIX}{exchange}/{token}"


@dataclass(frozen=True, slots=True)
class Target:
    """Where a bot's request goes."""

    exchange: str
    origin: str  # scheme://host[:port]: the budget and the stats are kept per origin
    url: str  # the whole upstream URL, still encoded exactly as the bot sent it
    path: str  # its path, decoded, to find the endpoint in the exchange's table
    query: str  # its raw query string


def target(raw_path: str) -> Target:
    """The upstream of a request to the proxy (`request.raw_path`: path and query, raw)."""
    path, _, query = raw_path.partition("?")
    if not path.startswith(PREFIX):
        raise BadUpstream(f"paths start with {PREFIX}<exchange>/<upstream>/")
    exchange, _, rest = path[len(PREFIX) :].partition("/")
    token, slash, tail = rest.partition("/")
    if not EXCHANGE_ID.fullmatch(exchange) or not _TOKEN.fullmatch(token):
        raise BadUpstream("bad exchange or upstream in the path")
    try:
        base = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError):
        raise BadUpstream("the upstream is not base64url") from None
    upstream = check_upstream(base)
    url = base + slash + tail + (f"?{query}" if query else "")
    try:
        full = URL(url, encoded=True)
    except ValueError:
        raise BadUpstream("the request does not make a valid URL") from None
    return Target(exchange, str(upstream.origin()), url, full.path, query)
