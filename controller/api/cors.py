"""CORS for FreqUI: the bot proxy under /bots/ answers the browsers of one origin, that of
FREQUI_URL (a FreqUI served from elsewhere than the controller), and no other.

FreqUI signs in with basic auth (POST .../token/login) and then sends Bearer tokens in the
Authorization header. No cookie is involved (the proxy neither reads nor forwards
cookies), so credentialed requests are not allowed: a page of that origin can do only what
the token its user typed into it allows, as with curl. A preflight (OPTIONS with
Access-Control-Request-Method) is answered here, before authentication, since browsers send
it without credentials; the headers go on every answer, the proxy's streamed ones too
(aiohttp's on_response_prepare, called before the headers are sent).
"""

from __future__ import annotations

from urllib.parse import urlsplit

from aiohttp import web

from controller.api.middleware import Handler

PREFIX = "/bots/"
PREFLIGHT = {
    "Access-Control-Allow-Methods": "GET, POST, PUT, PATCH, DELETE",
    "Access-Control-Allow-Headers": "Authorization, Content-Type",
    "Access-Control-Max-Age": "600",
}


def origin_of(url: str) -> str:
    """The origin (scheme://host[:port]) a browser sends for pages under `url`; "" for none."""
    if not url:
        return ""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}".lower()


class FreqUICors:
    def __init__(self, frequi_url: str) -> None:
        self.origin = origin_of(frequi_url)

    def _applies(self, request: web.Request) -> bool:
        return bool(self.origin) and request.path.startswith(PREFIX)

    def _allowed(self, request: web.Request) -> bool:
        return self._applies(request) and request.headers.get("Origin", "").lower() == self.origin

    @web.middleware
    async def preflight(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if (
            request.method == "OPTIONS"
            and "Access-Control-Request-Method" in request.headers
            and self._allowed(request)
        ):
            return web.Response(status=204, headers=PREFLIGHT)
        return await handler(request)

    async def on_prepare(self, request: web.Request, response: web.StreamResponse) -> None:
        if not self._applies(request):
            return
        response.headers["Vary"] = "Origin"  # answers differ by Origin: caches must tell
        if self._allowed(request):
            response.headers["Access-Control-Allow-Origin"] = self.origin
