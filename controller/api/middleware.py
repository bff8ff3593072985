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


def public(handler: Handler) -> Handler:
    """Mark a route as doing its own authentication (or needing none)."""
    handler.ftpool_public = True  # type: ignore[attr-defined]
    return handler


def json_error(status: int, message: str, **extra: Any) -> web.Response:
    return web.json_response({"success": False, "error": message, **extra}, status=status)


def principal(request: web.Request) -> Principal:
    return request[PRINCIPAL]


async def read_json(request: web.Request) -> Any:
    if not request.body_exists:
        return None
    try:
        return json.loads(await request.read())
    except (ValueError, UnicodeDecodeError):
        raise web.HTTPBadRequest(reason="body is not valid JSON") from None
    except RecursionError:
        raise web.HTTPBadRequest(reason="body nests too deeply") from None


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except FtpoolError as exc:
        return json_error(exc.status, str(exc), **getattr(exc, "extra", {}))
    except InvalidId as exc:
        return json_error(400, str(exc))
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return json_error(exc.status, exc.reason)
    except Exception:
        log.exception("unhandled_error", method=request.method, path=request.path)
        return json_error(500, "internal error")


@web.middleware
async def auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    route_handler = getattr(request.match_info.route, "handler", None)
    if not getattr(route_handler, "ftpool_public", False):
        auth = request.app[AUTHENTICATOR]
        request[PRINCIPAL] = auth.from_header(
            request.headers.get("Authorization"), allow_basic=request.path.startswith("/bots/")
        )
    return await handler(request)
