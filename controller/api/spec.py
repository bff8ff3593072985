"""The building blocks of the OpenAPI description: how an API class declares its operations
beside its routes, and the shapes (JSON Schema) several of them answer with.

An API class lists `operations`: (method, path as its route is written) → `op(...)`. The
description (controller/api/openapi.py) is made from the app's route table and these, and
a unit test fails on a route without an operation or an operation without a route.
"""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

from common.ids import ID_PATTERN
from common.protocol import LAUNCH_MODES
from common.states import BotStatusWord, FleetHealth, PoolStatusWord

Schema = dict[str, Any]
Operations = dict[tuple[str, str], Schema]

# Security requirements (the schemes are in openapi.py's components).
USER = [{"bearerToken": []}]  # the admin token or a platform JWT; a user sees their own bots
ADMIN = [{"adminToken": []}]
BOT_CLIENT = [{"bearerToken": []}, {"basicAuth": []}]  # what FreqUI and freqtrade-client send
PUBLIC: list[dict[str, list[str]]] = []


def ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def nullable(schema: Schema) -> Schema:
    return {"anyOf": [schema, {"type": "null"}]}


def obj(required: dict[str, Schema], **optional: Schema) -> Schema:
    """An object with these properties, the first set required; more may come later."""
    return {
        "type": "object",
        "required": list(required),
        "properties": {**required, **optional},
    }


STR: Schema = {"type": "string"}
INT: Schema = {"type": "integer"}
NUM: Schema = {"type": "number"}
BOOL: Schema = {"type": "boolean"}
ID: Schema = {"type": "string", "pattern": f"^{ID_PATTERN}$"}
# A Swarm node by its id (25 characters) or hostname: nothing else reaches the Docker API.
NODE_PATTERN = r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}"
TRUE: Schema = {"const": True}
ANY_OBJECT: Schema = {"type": "object"}
ANY_LIST: Schema = {"type": "array"}


def json_body(schema: Schema, description: str = "") -> Schema:
    body: Schema = {"content": {"application/json": {"schema": schema}}}
    if description:
        body["description"] = description
    return body


def answer(schema: Schema, description: str = "success", media: str = "application/json") -> Schema:
    return {"description": description, "content": {media: {"schema": schema}}}


def query(name: str, schema: Schema, description: str) -> Schema:
    return {"name": name, "in": "query", "required": False, "schema": schema,
            "description": description}  # fmt: skip


def op(
    summary: str,
    *,
    security: list[dict[str, list[str]]],
    ok: dict[int | str, Schema],
    errors: tuple[int, ...] = (),
    params: tuple[Schema, ...] = (),
    body: Schema | None = None,
    description: str = "",
    tags: tuple[str, ...] = (),
) -> Schema:
    """One operation: its answers `ok` and its error statuses (each the JSON error body).

    Every authenticated operation can answer 401; admin ones 403 as well; one with a body
    400 (not JSON, not the right shape) and 413 (over MAX_BODY_BYTES)."""
    codes = set(errors)
    if security:
        codes.add(401)
    if security == ADMIN:
        codes.add(403)
    if body is not None:
        codes |= {400, 413}
    responses: Schema = {str(code): schema for code, schema in ok.items()}
    for code in sorted(codes):
        responses[str(code)] = {"$ref": f"#/components/responses/{error_name(code)}"}
    operation: Schema = {"summary": summary, "security": security, "responses": responses}
    if description:
        operation["description"] = description
    if params:
        operation["parameters"] = list(params)
    if body is not None:
        operation["requestBody"] = body
    if tags:
        operation["tags"] = list(tags)
    return operation


def error_name(code: int) -> str:
    return f"Error{code}"


def error_response(code: int) -> Schema:
    response = answer(ref("Error"), f"{HTTPStatus(code).phrase}: the JSON error")
    if code == 401:
        response["headers"] = {"WWW-Authenticate": {"required": True, "schema": STR}}
    return response


ERROR = obj({"success": {"const": False}, "error": STR})

# A bot's limits, what it uses against them, and whether its agent deprioritises it as
# busy (controller/api/views.py limits_view; docs/limits.md).
BOT_LIMITS = obj({
    "memoryBytes": nullable(INT), "own": BOOL, "cpu": nullable(NUM), "cpuOwn": BOOL,
    "cpuEnforcement": nullable({"enum": ["cgroup", "priority", "none"]}),
})  # fmt: skip
_USE = {"limitPercent": nullable(NUM), "ofLimitPercent": nullable(NUM)}
BOT_USAGE = obj({
    "cpu": obj({"percent": nullable(NUM), **_USE}),
    "memory": obj({"ownBytes": nullable(INT), "limitBytes": nullable(INT),
                   "ofLimitPercent": nullable(NUM)}),
})  # fmt: skip
BOT_BUSY = obj({"deprioritised": nullable(BOOL), "since": nullable(NUM), "policy": nullable(STR)})

BOT = obj(
    {
        "instanceId": ID,
        "userId": ID,
        "poolId": ID,
        "port": INT,
        "strategy": STR,
        "desired": {"enum": ["running", "stopped"]},
        "status": {"enum": [str(w) for w in BotStatusWord]},
        "process": nullable(
            obj(
                {
                    "state": STR,
                    "pid": nullable(INT),
                    "uptimeSeconds": nullable(NUM),
                    "exitStatus": nullable(INT),
                    "memoryBytes": nullable(INT),
                    "cpuPercent": nullable(NUM),
                    "ping": obj({"ok": nullable(BOOL), "ms": nullable(NUM)}),
                    "portOk": nullable(BOOL),
                    "stale": BOOL,
                }
            )
        ),
        "restarts": obj({"attempts": INT, "cycles": INT, "lastAt": nullable(NUM), "failed": BOOL}),
        "limits": BOT_LIMITS,
        "usage": BOT_USAGE,
        "busy": BOT_BUSY,
        "createdAt": NUM,
    }
)

LAUNCH = {"enum": list(LAUNCH_MODES)}
MEMORY_SAVED = obj({
    "legacyContainerBytes": INT, "runningBots": INT, "poolsBytes": nullable(INT),
    "legacyBytes": nullable(INT), "savedBytes": nullable(INT), "savedPercent": nullable(NUM),
})  # fmt: skip
POOL = obj(
    {
        "id": ID,
        "containerName": STR,
        "node": nullable(STR),
        "mode": {"enum": ["pooled", "legacy"]},
        "status": {"enum": [str(w) for w in PoolStatusWord]},
        "botsCount": INT,
        "capacity": INT,
        "utilizationPercent": INT,
        "bots": {"type": "array", "items": ID},
        "ports": obj({"start": INT, "end": INT}),
        "owner": nullable(STR),
        "draining": BOOL,
        "memory": obj(
            {
                "usedBytes": nullable(INT),
                "limitBytes": nullable(INT),
                "runtimeBytes": nullable(INT),
                "savedBytes": nullable(INT),
            }
        ),
        "runningBots": INT,
        "freqtrade": nullable(STR),
        "cpuPercent": nullable(NUM),
        "limits": obj(
            {
                "mode": STR,
                "oomGuard": nullable(BOOL),
                "botMemoryLimitsBytes": nullable(INT),
                "botsOwnMemoryBytes": nullable(INT),
                "botCpuLimits": nullable(NUM),
                "busyPolicy": nullable(STR),
                "deprioritised": {"type": "array", "items": ID},
            }
        ),
        "launch": obj(
            {
                "mode": LAUNCH,
                "override": nullable(LAUNCH),
                "preloader": nullable(STR),
                "preloaderRestarts": INT,
            }
        ),
        "marketData": nullable(ANY_OBJECT),
        "lastRuntimeEvent": nullable(obj({"action": STR, "at": NUM})),
        "agent": obj(
            {
                "connected": BOOL,
                "version": nullable(STR),
                "lastHeartbeatAgoSeconds": nullable(NUM),
                "generation": INT,
                "appliedGeneration": INT,
            }
        ),
    }
)

EVENT = obj({
    "id": INT, "type": STR, "poolId": nullable(STR), "instanceId": nullable(STR),
    "reason": STR, "timestamp": {"type": "string", "format": "date-time"}, "detail": ANY_OBJECT,
})  # fmt: skip

FLEET_HEALTH = obj({
    "status": {"enum": [str(h) for h in FleetHealth]},
    "pools": obj({"total": INT, "healthy": INT, "unhealthy": INT}),
    "bots": obj({"total": INT, "healthy": INT, "unhealthy": INT, "stopped": INT}),
})  # fmt: skip

MIGRATION_RUN = obj({
    "id": STR, "bot": STR, "user": STR, "kind": {"enum": ["migrate", "rollback"]},
    "source": STR, "started_at": NUM, "finished_at": nullable(NUM), "outcome": STR,
    "reason": STR, "steps": ANY_LIST,
})  # fmt: skip

BOT_LOCATION = obj({
    "success": TRUE, "instanceId": ID, "userId": ID, "isPooled": BOOL,
    "mode": {"enum": ["pooled", "legacy"]}, "managed": BOOL, "poolId": nullable(ID),
    "containerName": nullable(STR),
    "connection": nullable(obj({"host": STR, "port": INT, "url": STR})),
}, limits=BOT_LIMITS, usage=BOT_USAGE, busy=BOT_BUSY)  # fmt: skip

SCHEMAS = {
    "Error": ERROR, "Bot": BOT, "BotLocation": BOT_LOCATION, "Pool": POOL, "Event": EVENT,
    "MemorySaved": MEMORY_SAVED, "FleetHealth": FLEET_HEALTH, "MigrationRun": MIGRATION_RUN,
}  # fmt: skip
