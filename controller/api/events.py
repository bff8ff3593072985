"""/api/pool/events: health and recovery events as Server-Sent Events, and their history.

A stream subscribes before it reads the history, so no event falls between the two;
one seen in both is sent once (ids only grow). Admins see every event, a user only
the events of their own bots.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable

from aiohttp import web

from controller.api.middleware import STILL_VALID, principal
from controller.api.spec import USER, Operations, answer, obj, op, query, ref
from controller.errors import BadRequest
from controller.events import Event, EventBus, Subscription

KEEPALIVE_SECONDS = 15.0
MAX_HISTORY = 1000
HISTORY_DEFAULT = 100
# Events per store read while replaying after a client's last id.
REPLAY_PAGE = 500


def query_int(request: web.Request, name: str, default: int, hi: int) -> int:
    raw = request.query.get(name)
    if raw is None:
        return default
    return checked_int(name, raw, hi)


def checked_int(name: str, raw: str, hi: int) -> int:
    try:
        value = int(raw)
    except ValueError:
        raise BadRequest(f"{name} must be an integer") from None
    if not 0 <= value <= hi:
        raise BadRequest(f"{name} must be between 0 and {hi}")
    return value


def since_of(request: web.Request) -> int | None:
    """Where to resume: a reconnecting EventSource's Last-Event-ID wins over ?since."""
    raw = request.headers.get("Last-Event-ID") or request.query.get("since")
    return None if raw is None else checked_int("since", raw, 2**63 - 1)


def sse(event: Event) -> bytes:
    data = json.dumps(event.to_json(), separators=(",", ":"))
    return f"id: {event.id}\nevent: {event.type}\ndata: {data}\n\n".encode()


class APIEvents:
    operations: Operations = {
        ("GET", "/api/pool/events"): op(
            "health and recovery events as Server-Sent Events", security=USER,
            tags=("events",), errors=(400,),
            description="The stored events after Last-Event-ID (or since), or else the last "
            "`history`, then live ones; a keepalive comment every 15 s. A user sees only "
            "the events of their own bots.",
            params=(
                query("history", {"type": "integer", "minimum": 0, "maximum": MAX_HISTORY},
                      "how many stored events to send first (default 0)"),
                query("since", {"type": "integer", "minimum": 0},
                      "send the stored events after this id first"),
                {"name": "Last-Event-ID", "in": "header", "required": False,
                 "schema": {"type": "integer", "minimum": 0},
                 "description": "as since; a reconnecting EventSource sends it"},
            ),
            ok={200: answer({"type": "string"}, "the event stream", "text/event-stream")},
        ),
        ("GET", "/api/pool/events/history"): op(
            "stored events as JSON, oldest first", security=USER, tags=("events",),
            errors=(400,),
            params=(
                query("limit", {"type": "integer", "minimum": 0, "maximum": MAX_HISTORY},
                      f"at most this many (default {HISTORY_DEFAULT})"),
                query("since", {"type": "integer", "minimum": 0},
                      "the first events after this id (else the last ones)"),
            ),
            ok={200: answer(obj({
                "success": {"const": True},
                "events": {"type": "array", "items": ref("Event")},
            }))},
        ),
    }  # fmt: skip

    def __init__(self, events: EventBus) -> None:
        self.events = events

    def routes(self) -> list[web.RouteDef]:
        return [
            web.get("/api/pool/events", self.stream),
            web.get("/api/pool/events/history", self.history),
        ]

    async def shutdown(self, _app: web.Application) -> None:
        self.events.end_streams()

    async def history(self, request: web.Request) -> web.Response:
        who = principal(request)
        limit = query_int(request, "limit", HISTORY_DEFAULT, MAX_HISTORY)
        events = await self.events.recent(
            limit, since_of(request), None if who.is_admin else who.user_id
        )
        return web.json_response({"success": True, "events": [e.to_json() for e in events]})

    async def stream(self, request: web.Request) -> web.StreamResponse:
        who = principal(request)
        user = None if who.is_admin else who.user_id
        # Validated before the response starts, so a bad value is still a JSON 400.
        since = since_of(request)
        history = query_int(request, "history", 0, MAX_HISTORY)
        response = web.StreamResponse(
            headers={
                "Content-Type": "text/event-stream",
                "Cache-Control": "no-cache",
                # Reverse proxies would otherwise hold events back in their buffers.
                "X-Accel-Buffering": "no",
            }
        )
        with self.events.subscribe(user) as sub:
            await response.prepare(request)
            try:
                last = await self._replay(response, user, since, history)
                await self._live(response, sub, last, request.get(STILL_VALID))
            except ConnectionError:
                pass  # the client went away
        return response

    async def _replay(
        self, response: web.StreamResponse, user: str | None, since: int | None, history: int
    ) -> int:
        """Send the history the client asked for; returns the last id sent (or `since`)."""
        if since is None:
            events = await self.events.recent(history, None, user) if history else []
            for event in events:
                await response.write(sse(event))
            return events[-1].id if events else 0
        while True:
            events = await self.events.recent(REPLAY_PAGE, since, user)
            for event in events:
                await response.write(sse(event))
            if events:
                since = events[-1].id
            if len(events) < REPLAY_PAGE:
                return since

    async def _live(
        self, response: web.StreamResponse, sub: Subscription, last: int,
        still_valid: Callable[[], bool] | None,
    ) -> None:  # fmt: skip
        """Live events until the subscription ends, or (a dashboard session's stream) its
        credentials do: the stream ends at the first keepalive or event after that."""
        while True:
            if still_valid is not None and not still_valid():
                await response.write(b": session ended\n\n")
                return
            try:
                event = await asyncio.wait_for(anext(sub), KEEPALIVE_SECONDS)
            except TimeoutError:
                await response.write(b": keepalive\n\n")
                continue
            except StopAsyncIteration:
                break
            if event.id > last:
                await response.write(sse(event))
        if sub.dropped:
            await response.write(b": too slow, dropped; reconnect with Last-Event-ID\n\n")
