"""/api/openapi.json: the OpenAPI 3.1 description of every route, made from the app's route
table and the operations each API class declares beside its routes (controller/api/spec.py).

Public: it describes the API, it holds no secret and no fleet data.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from aiohttp import web

from common import __version__
from controller.api.middleware import public
from controller.api.spec import (
    ID,
    NODE_PATTERN,
    PUBLIC,
    SCHEMAS,
    STR,
    Operations,
    Schema,
    answer,
    error_name,
    error_response,
    obj,
    op,
)

# What a "*" route (the bot proxy) is described with: the methods FreqTrade's API uses.
ANY_METHOD = ("get", "post", "put", "patch", "delete")
POINT_PATTERN = r"^tradesv3(\.dryrun)?\.sqlite@[0-9]{8}T[0-9]{6}\.[0-9]{6}Z$"
PATH_PARAMETERS: dict[str, Schema] = {
    "instanceId": {"schema": ID, "description": "the bot's id"},
    "poolId": {"schema": ID, "description": "the pool's id"},
    "node": {
        "schema": {"type": "string", "pattern": f"^{NODE_PATTERN}$"},
        "description": "a Swarm node's id or hostname",
    },
    "userId": {"schema": ID, "description": "the user's id"},
    "tail": {
        "schema": {"type": "string", "minLength": 1},
        "description": "the path under the bot's /api/v1/, passed through",
    },
    "name": {"schema": {"type": "string"}, "description": "a file of the dashboard's"},
    "point": {
        "schema": {"type": "string", "pattern": POINT_PATTERN},
        "description": "a restore point: <database>@<stamp>",
    },
    "token": {
        "schema": {"type": "string", "pattern": "^[0-9a-f]{64}$"},
        "description": "a transfer's own token, good once",
    },
}
_CONVERTER = re.compile(r"\{(\w+):[^}]*\}")
_PLACEHOLDER = re.compile(r"\{(\w+)\}")

SECURITY_SCHEMES = {
    "bearerToken": {
        "type": "http", "scheme": "bearer",
        "description": "The admin token, or a JWT of the platform (HS256 with JWT_SECRET, "
        "claims sub and role). A user reaches only their own bots.",
    },
    "adminToken": {
        "type": "http", "scheme": "bearer",
        "description": "The admin token, or a platform JWT whose role is admin.",
    },
    "basicAuth": {
        "type": "http", "scheme": "basic",
        "description": "Under /bots/ only, as freqtrade-client sends it: the user id and one "
        "of the user's tokens (username admin with the admin token).",
    },
}  # fmt: skip


def route_key(route: web.AbstractRoute) -> tuple[str, str]:
    """(method, path) of a route, its path as aiohttp names it (no regex in {tail})."""
    return route.method, route.resource.canonical if route.resource else ""


def served(routes: Iterable[web.AbstractRoute]) -> set[tuple[str, str]]:
    """The routes an API class declares operations for (aiohttp's automatic HEAD aside)."""
    return {route_key(r) for r in routes if r.method != "HEAD"}


def openapi_path(path: str) -> str:
    return _CONVERTER.sub(r"{\1}", path)


def _path_parameters(path: str) -> list[Schema]:
    return [
        {"name": name, "in": "path", "required": True, **PATH_PARAMETERS[name]}
        for name in _PLACEHOLDER.findall(path)
    ]


def describe(routes: Iterable[web.AbstractRoute], operations: Operations) -> dict[str, Any]:
    """The description of the routes that have an operation (test_openapi checks all do)."""
    paths: dict[str, dict[str, Any]] = {}
    used: set[int] = set()
    for method, path in sorted(served(routes)):
        operation = operations.get((method, path))
        if operation is None:
            continue
        used |= {int(c) for c in operation["responses"] if c.isdigit()}
        item = paths.setdefault(openapi_path(path), {})
        if "{" in path:  # a placeholder PATH_PARAMETERS does not name fails here, in tests
            item["parameters"] = _path_parameters(openapi_path(path))
        for verb in ANY_METHOD if method == "*" else (method.lower(),):
            item[verb] = {**operation, "operationId": _operation_id(verb, path)}
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "ftpool controller",
            "version": __version__,
            "description": "Bots, pools, events, metrics, migration and the bot proxy. "
            'Every error is {"success": false, "error": "..."}; see docs/http-api.md.',
        },
        "paths": paths,
        "components": {
            "schemas": SCHEMAS,
            "responses": {error_name(c): error_response(c) for c in sorted(used) if c >= 400},
            "securitySchemes": SECURITY_SCHEMES,
        },
    }


def _operation_id(verb: str, path: str) -> str:
    words = re.findall(r"[A-Za-z0-9]+", _CONVERTER.sub(r"\1", path))
    index = "Index" if len(path) > 1 and path.endswith("/") else ""  # /ui/ beside /ui
    return verb + "".join(w[:1].upper() + w[1:] for w in words) + index


class APIOpenAPI:
    """Serves the description of the app it is part of, made once at its first request."""

    own_operations: Operations = {
        ("GET", "/api/openapi.json"): op(
            "this description (OpenAPI 3.1)", security=PUBLIC, tags=("meta",),
            ok={200: answer(obj({"openapi": STR, "info": {"type": "object"},
                                 "paths": {"type": "object"}}))},
        ),
    }  # fmt: skip

    def __init__(self, apis: Iterable[Any]) -> None:
        self.operations: Operations = {**self.own_operations}
        for api in apis:
            # A class without declarations still serves; test_openapi names its routes.
            self.operations.update(getattr(api, "operations", {}))
        self._document: dict[str, Any] | None = None

    def routes(self) -> list[web.RouteDef]:
        return [web.get("/api/openapi.json", self.document)]

    @public
    async def document(self, request: web.Request) -> web.Response:
        if self._document is None:
            self._document = describe(request.app.router.routes(), self.operations)
        return web.json_response(self._document)
