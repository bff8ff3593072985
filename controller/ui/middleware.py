"""The session cookie as a credential of the API routes the dashboard calls, and only those.

A request with an Authorization header is left to the API's own authentication exactly
as before: the cookie is looked at only when there is no header. It authorizes only the
routes listed here (not the bot proxy, not admin actions the dashboard does not offer),
and a state-changing one only with the session's CSRF token in the X-CSRF-Token header.
What a principal may see or do is then decided by the API's own checks, as for a token.
"""

from __future__ import annotations

from aiohttp import web

from controller.api.middleware import PRINCIPAL, STILL_VALID, Handler
from controller.ui.session import COOKIE, CSRF_HEADER, SessionKeeper

SESSIONS = web.AppKey("sessions", SessionKeeper)
SAFE_METHODS = ("GET", "HEAD")
# (method, route) the dashboard's pages call with the cookie.
SESSION_ROUTES = frozenset({
    ("GET", "/api/bots"),
    ("GET", "/api/bots/{instanceId}"),
    ("POST", "/api/bots/{instanceId}/start"),
    ("POST", "/api/bots/{instanceId}/stop"),
    ("POST", "/api/bots/{instanceId}/restart"),
    ("DELETE", "/api/bots/{instanceId}"),
    ("GET", "/api/pool/bot/{instanceId}/log"),
    ("GET", "/api/pool/bot/{instanceId}/usage"),
    ("GET", "/api/pool/status"),
    ("GET", "/api/agents"),
    ("GET", "/api/pool/migration/log"),
    ("GET", "/api/pool/upgrade"),
    ("GET", "/api/pool/events"),
    ("GET", "/api/pool/events/history"),
})  # fmt: skip


def session_route(request: web.Request) -> bool:
    method = "GET" if request.method == "HEAD" else request.method
    resource = request.match_info.route.resource
    return resource is not None and (method, resource.canonical) in SESSION_ROUTES


@web.middleware
async def session_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    cookie = request.cookies.get(COOKIE)
    if cookie and "Authorization" not in request.headers and session_route(request):
        keeper = request.app[SESSIONS]
        session = keeper.read(cookie)
        if request.method not in SAFE_METHODS:
            keeper.check_csrf(session, request.headers.get(CSRF_HEADER))
        request[PRINCIPAL] = session.principal
        request[STILL_VALID] = lambda: keeper.valid(session)
    return await handler(request)
