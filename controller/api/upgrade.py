"""/api/pool/upgrade: rolling upgrades of the pool image (admin only).

POST plans (dryRun) or starts a run, which goes on in the controller whatever the client
does; GET shows the run in progress and the last ones, pool by pool. `ftpool upgrade`
drives both (controller/upgrade/cli.py).
"""

from __future__ import annotations

import re
from typing import Any

from aiohttp import web

from common.ids import check_id
from controller.api.middleware import principal, read_json
from controller.api.spec import (
    ADMIN,
    ANY_LIST,
    ANY_OBJECT,
    BOOL,
    TRUE,
    answer,
    json_body,
    nullable,
    obj,
    op,
)  # fmt: skip
from controller.errors import BadRequest
from controller.upgrade.census import ImageCensus
from controller.upgrade.plan import DEFAULT_METHOD, METHODS, Selection
from controller.upgrade.run import UpgradeOptions, Upgrader

# A Docker image reference: [registry/]name[:tag][@digest], or an image id.
IMAGE_REF = re.compile(r"[A-Za-z0-9][A-Za-z0-9._/:@-]{0,254}")
LIMITS = {  # body field: (lowest, highest)
    "canary": (0, 1000), "soak": (0, 86400), "concurrency": (1, 100), "pause": (0, 86400),
    "timeout": (1, 3600),
}  # fmt: skip
SELECTORS = {"pools": "poolId", "users": "userId", "bots": "instanceId"}
FIELDS = {"image", "dryRun", "method", *LIMITS, *SELECTORS}


def parse_upgrade(body: Any) -> tuple[UpgradeOptions, bool]:
    """A POST body as the run's options, and whether it is a dry run; BadRequest says what
    is wrong with it."""
    if not isinstance(body, dict):
        raise BadRequest("body must be a JSON object")
    unknown = set(body) - FIELDS
    if unknown:
        raise BadRequest(f"unknown field(s): {', '.join(sorted(unknown))}")
    image = body.get("image", "")
    if not isinstance(image, str) or (image and not IMAGE_REF.fullmatch(image)):
        raise BadRequest("image must be a Docker image reference")
    numbers: dict[str, float] = {}
    for name, (lo, hi) in LIMITS.items():
        if name not in body:
            continue
        value = body[name]
        if isinstance(value, bool) or not isinstance(value, int | float) or not lo <= value <= hi:
            raise BadRequest(f"{name} must be a number from {lo} to {hi}")
        numbers[name] = value
    for name in ("canary", "concurrency"):
        if name in numbers and numbers[name] != int(numbers[name]):
            raise BadRequest(f"{name} must be a whole number")
    chosen: dict[str, frozenset[str]] = {}
    for name, kind in SELECTORS.items():
        values = body.get(name, [])
        if not isinstance(values, list) or len(values) > 1000:
            raise BadRequest(f"{name} must be a list of ids")
        chosen[name] = frozenset(check_id(v, kind) for v in values)
    method = body.get("method", DEFAULT_METHOD)
    if method not in METHODS:
        raise BadRequest(f"method must be one of {', '.join(METHODS)}")
    dry_run = body.get("dryRun", False)
    if not isinstance(dry_run, bool):
        raise BadRequest("dryRun must be true or false")
    options = UpgradeOptions(
        image=image, selection=Selection(**chosen), canary=int(numbers.get("canary", 0)),
        soak=float(numbers.get("soak", 0)), concurrency=int(numbers.get("concurrency", 1)),
        pause=float(numbers.get("pause", 0)), timeout=float(numbers.get("timeout", 180)),
        method=method,
    )  # fmt: skip
    return options, dry_run


_IDS = {"type": "array", "maxItems": 1000, "items": {"type": "string"}}
_BODY = {
    "type": "object", "additionalProperties": False,
    "properties": {
        "image": {"type": "string"}, "dryRun": BOOL,
        "method": {"type": "string", "enum": list(METHODS)},
        **{name: {"type": "number", "minimum": lo, "maximum": hi}
           for name, (lo, hi) in LIMITS.items()},
        **{name: _IDS for name in SELECTORS},
    },
}  # fmt: skip


class APIUpgrade:
    operations = {
        ("GET", "/api/pool/upgrade"): op(
            "the upgrade in progress and the last runs, pool by pool (admin)",
            security=ADMIN, tags=("upgrade",),
            ok={200: answer(obj({"success": TRUE, "running": BOOL,
                                 "current": nullable(ANY_OBJECT), "runs": ANY_LIST,
                                 "poolImage": nullable(ANY_OBJECT), "outdatedPools": ANY_LIST}))},
        ),
        ("POST", "/api/pool/upgrade"): op(
            "plan (dryRun) or start moving pools to a new pool image, one pool at a time, "
            "each recreated in place or its bots moved into a fresh pool (method) (admin)",
            security=ADMIN, tags=("upgrade",), errors=(404, 409),
            body=json_body(_BODY),
            ok={200: answer(obj({"success": TRUE, "dryRun": TRUE, "image": ANY_OBJECT,
                                 "pools": ANY_LIST, "skipped": ANY_LIST}), "the plan"),
                202: answer(obj({"success": TRUE, "run": ANY_OBJECT}), "the run started")},
        ),
    }  # fmt: skip

    def __init__(self, upgrader: Upgrader, census: ImageCensus) -> None:
        self.upgrader = upgrader
        self.census = census

    def routes(self) -> list[web.RouteDef]:
        return [
            web.get("/api/pool/upgrade", self.status),
            web.post("/api/pool/upgrade", self.upgrade),
        ]

    async def status(self, request: web.Request) -> web.Response:
        principal(request).require_admin()
        await self.census.refresh(max_age=0)
        current = self.upgrader.current()
        return web.json_response({
            "success": True,
            "running": current is not None,
            "current": current.to_json() if current else None,
            "runs": [r.to_json() for r in self.upgrader.runs[-5:]],
            **self.census.summary(),
        })  # fmt: skip

    async def upgrade(self, request: web.Request) -> web.Response:
        principal(request).require_admin()
        options, dry_run = parse_upgrade(await read_json(request, empty={}))
        if dry_run:
            plan = await self.upgrader.plan(options)
            return web.json_response({"success": True, "dryRun": True, **plan.to_json()})
        run = await self.upgrader.start(options)
        return web.json_response({"success": True, "run": run.to_json()}, status=202)
