"""Middlewares: every error becomes a JSON body; every non-public route is authenticated."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

import structlog
from aiohttp import web

from common.ids import InvalidId
from controller.auth import Authenticator, Principal
from controller.errors import FtpoolError

log = structlog.get_logger("controller.api")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
AUTHENTICATOR = web.AppKey("authenticator", Authenticator)
PRINCIPAL = web.RequestKey("principal", Principal)
# Whether the request's credentials still hold, for requests that outlive a moment (the
# events stream); set only for a dashboard session (expired or signed out), not for tokens.
STILL_VALID = web.RequestKey("still_valid", Callable[[], bool])


def public(handler: Handler) -> Handler:
    """Mark a route as doing its own authentication (or needing none)."""
    handler.ftpool_public = True  # type: ignore[attr-defined]
    return handler


def json_error(status: int, message: str, **extra: Any) -> web.Response:
    return web.json_response({"success": False, "error": message, **extra}, status=status)


def principal(request: web.Request) -> Principal:
    return request[PRINCIPAL]


async def read_json(request: web.Request, empty: Any = None) -> Any:
    """The request's JSON body; `empty` when it has none (a body `null` is None)."""
    if not request.body_exists:
        return empty
    try:
        return json.loads(await request.read())
    except (ValueError, UnicodeDecodeError):
        raise web.HTTPBadRequest(reason="body is not valid JSON") from None
    except RecursionError:
        raise web.HTTPBadRequest(reason="body nests too deeply") from None


def _with_required_headers(response: web.Response) -> web.Response:
    """A 401 says how to authenticate (RFC 9110 11.6.1). Bearer only: a Basic challenge
    would make a browser running FreqUI pop up its own login dialog."""
    if response.status == 401:
        response.headers["WWW-Authenticate"] = 'Bearer realm="ftpool"'
    return response


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except FtpoolError as exc:
        return _with_required_headers(json_error(exc.status, str(exc), **getattr(exc, "extra", {})))
    except InvalidId as exc:
        return json_error(400, str(exc))
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        response = json_error(exc.status, exc.reason)
        if "Allow" in exc.headers:  # a 405 names the methods the route has (RFC 9110 15.5.6)
            response.headers["Allow"] = exc.headers["Allow"]
        return _with_required_headers(response)
    except Exception:
        log.exception("unhandled_error", method=request.method, path=request.path)
        return json_error(500, "internal error")


@web.middleware
async def auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    route_handler = getattr(request.match_info.route, "handler", None)
    # A principal already set came from a dashboard session (controller/ui/middleware.py).
    if PRINCIPAL not in request and not getattr(route_handler, "ftpool_public", False):
        auth = request.app[AUTHENTICATOR]
        request[PRINCIPAL] = auth.from_header(
            request.headers.get("Authorization"), allow_basic=request.path.startswith("/bots/")
        )
    return await handler(request)
