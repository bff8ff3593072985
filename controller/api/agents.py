"""/api/agents: the agents' WebSocket, and an admin view of the connections."""

from __future__ import annotations

import time

import structlog
from aiohttp import WSMessage, WSMsgType, web

from common.protocol import (
    MAX_FRAME_BYTES,
    FilesResponse,
    Heartbeat,
    Hello,
    LogResponse,
    ProtocolError,
    RestoreResponse,
    decode,
)
from controller.api.middleware import principal, public
from controller.api.spec import (
    ADMIN,
    BOOL,
    INT,
    NUM,
    PUBLIC,
    STR,
    Operations,
    answer,
    nullable,
    obj,
    op,
)
from controller.pools.manager import PoolManager

log = structlog.get_logger("controller.api.agents")
HELLO_TIMEOUT = 10.0


class APIAgents:
    operations: Operations = {
        ("GET", "/api/agents/ws"): op(
            "the pool agents' WebSocket (msgpack frames)", security=PUBLIC, tags=("agents",),
            description="The first frame, hello, carries the pool token; without it the "
            "socket closes with 4401. A request that is not a WebSocket upgrade is a 400.",
            ok={101: {"description": "switching to the WebSocket protocol"}}, errors=(400,),
        ),
        ("GET", "/api/agents"): op(
            "each pool's agent connection and the frame counters", security=ADMIN,
            tags=("agents",),
            ok={200: answer(obj({
                "success": {"const": True},
                "agents": {"type": "array", "items": obj({
                    "poolId": STR, "connected": BOOL, "version": nullable(STR),
                    "connectedAt": nullable(NUM), "lastHeartbeatAgoSeconds": nullable(NUM),
                    "sequence": INT, "generation": INT, "appliedGeneration": INT,
                })},
                "frames": obj({"received": INT, "rejected": INT}),
            }))},
        ),
    }  # fmt: skip

    def __init__(self, pools: PoolManager) -> None:
        self.pools = pools

    def routes(self) -> list[web.RouteDef]:
        return [
            web.get("/api/agents/ws", self.websocket),
            web.get("/api/agents", self.list),
        ]

    def _reject(self, reason: str, pool_id: str | None = None, **context: object) -> None:
        self.pools.sessions.frames_rejected += 1
        log.warning("agent_frame_rejected", reason=reason, pool=pool_id, **context)

    @public
    async def websocket(self, request: web.Request) -> web.WebSocketResponse:
        """One agent's session. Authenticated by the pool token in its first frame (hello)."""
        ws = web.WebSocketResponse(max_msg_size=MAX_FRAME_BYTES,
                                   heartbeat=self.pools.agent_heartbeat)  # fmt: skip
        await ws.prepare(request)
        try:
            first = await ws.receive(timeout=HELLO_TIMEOUT)
        except TimeoutError:
            await ws.close(code=4408, message=b"no hello")
            return ws
        hello, refused = self._hello(first)
        if hello is not None and not self.pools.sessions.verify_hello(hello):
            refused = "a hello with an unknown pool token"
        if refused:
            # The pool id a refused hello names is a validated id, not a secret; the
            # token is never logged.
            self._reject(refused, hello.pool_id if hello else None, peer=request.remote)
            await ws.close(code=4401, message=b"unauthorized")
            return ws
        assert hello is not None
        pool_id = hello.pool_id
        await self.pools.sessions.attach(hello, ws)
        try:
            async for msg in ws:
                if msg.type == WSMsgType.ERROR:  # no pong in time, or the connection broke
                    log.warning("agent_connection_lost", pool=pool_id, error=str(ws.exception()))
                    break
                if msg.type != WSMsgType.BINARY:
                    self._reject(f"non-binary frame {msg.type.name}", pool_id)
                    continue
                self.pools.sessions.frames_received += 1
                try:
                    frame = decode(msg.data)
                except ProtocolError as exc:
                    self._reject(str(exc), pool_id)
                    continue
                if isinstance(frame, Heartbeat):
                    await self.pools.heartbeat(pool_id, frame)
                elif isinstance(frame, LogResponse | RestoreResponse | FilesResponse):
                    self.pools.sessions.response(frame)
                else:
                    self._reject(f"unexpected frame {frame.t}", pool_id)
        finally:
            self.pools.sessions.detach(pool_id, ws)
        return ws

    @staticmethod
    def _hello(first: WSMessage) -> tuple[Hello | None, str]:
        """The first frame as a hello, or why it is none."""
        if first.type != WSMsgType.BINARY:
            return None, f"first frame is {first.type.name}, not a binary hello"
        try:
            frame = decode(first.data)
        except ProtocolError as exc:
            return None, f"first frame: {exc}"
        if not isinstance(frame, Hello):
            return None, f"first frame is {frame.t}, not hello"
        return frame, ""

    async def list(self, request: web.Request) -> web.Response:
        principal(request).require_admin()
        now = time.time()
        agents = [
            {
                "poolId": pool_id,
                "connected": live.connected,
                "version": live.agent_version or None,
                "connectedAt": live.connected_at or None,
                "lastHeartbeatAgoSeconds": round(now - live.last_seen, 1)
                if live.last_seen
                else None,
                "sequence": live.seq,
                "generation": self.pools.registry.pools[pool_id].generation,
                "appliedGeneration": live.acked_gen,
            }
            for pool_id, live in sorted(self.pools.registry.live.items())
        ]
        return web.json_response(
            {
                "success": True,
                "agents": agents,
                "frames": {
                    "received": self.pools.sessions.frames_received,
                    "rejected": self.pools.sessions.frames_rejected,
                },
            }
        )
