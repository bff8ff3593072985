"""Frames to bytes and back: a msgpack map with the type `t` and protocol version `v`;
heartbeats decode in one pass (common/heartbeat_wire.py), every other frame by the
checks of its class."""

from __future__ import annotations

from typing import Any

import msgpack
from msgspec.structs import astuple

from common import heartbeat_wire
from common.heartbeat_wire import PROTOCOL_VERSION
from common.protocol.fields import ProtocolError, as_map
from common.protocol.frames import Desired, Heartbeat, Hello
from common.protocol.requests import (
    FilesRequest,
    FilesResponse,
    LogRequest,
    LogResponse,
    RestoreRequest,
    RestoreResponse,
)
from common.protocol.status import BackupState, BotStatus, MarketDataStats, PoolStats, UpstreamStats

MAX_FRAME_BYTES = 8 * 1024 * 1024

Message = (
    Hello | Heartbeat | Desired | LogRequest | LogResponse | RestoreRequest | RestoreResponse
    | FilesRequest | FilesResponse
)  # fmt: skip
_FRAMES = (Hello, Heartbeat, Desired, LogRequest, LogResponse, RestoreRequest, RestoreResponse)
_TYPES: dict[str, Any] = {cls.t: cls for cls in (*_FRAMES, FilesRequest, FilesResponse)}


def encode(msg: Message) -> bytes:
    body = msg.to_wire()
    body["t"] = msg.t
    body["v"] = PROTOCOL_VERSION
    return msgpack.packb(body, use_bin_type=True)


def _heartbeat_of(wire: heartbeat_wire.HeartbeatWire) -> Heartbeat:
    md, bk = wire.md, wire.bk
    return Heartbeat(
        wire.seq, wire.gen, [BotStatus(*astuple(b)) for b in wire.bots],
        PoolStats(*astuple(wire.pool)), wire.preloader,
        None if md is None else MarketDataStats(
            md.state, md.cache_bytes, md.cache_entries,
            [UpstreamStats(*astuple(u)) for u in md.upstreams], md.holder, md.routed,
        ),
        None if bk is None else BackupState(*astuple(bk)),
    )  # fmt: skip


def decode(data: bytes) -> Message:
    if not isinstance(data, bytes | bytearray) or len(data) > MAX_FRAME_BYTES:
        raise ProtocolError("frame must be bytes up to the size limit")
    # Heartbeats, most frames by far, decode and validate in one pass (common/
    # heartbeat_wire.py); whatever that refuses, valid or not, the general decoder decides.
    wire = heartbeat_wire.decode(data)
    if wire is not None:
        return _heartbeat_of(wire)
    return decode_general(data)


def decode_general(data: bytes) -> Message:
    """Any frame, by its class's own checks (from_wire): the decoder every frame had
    before the heartbeats' one pass, and the reference that pass must agree with."""
    if not isinstance(data, bytes | bytearray) or len(data) > MAX_FRAME_BYTES:
        raise ProtocolError("frame must be bytes up to the size limit")
    try:
        # unpackb bounds every container by the frame's own length.
        raw = msgpack.unpackb(data, raw=False, strict_map_key=True)
    except (ValueError, msgpack.UnpackException) as exc:
        raise ProtocolError(f"not msgpack: {exc}") from None
    m = as_map(raw, "frame")
    version, kind = m.get("v"), m.get("t")
    # `type(...) is int`: True == 1, but a bool is not a protocol version.
    if type(version) is not int or version != PROTOCOL_VERSION:
        raise ProtocolError(f"unsupported protocol version {version!r}")
    # Only a str may be looked up: a list or map here would be unhashable (TypeError).
    cls = _TYPES.get(kind) if isinstance(kind, str) else None
    if cls is None:
        raise ProtocolError(f"unknown frame type {kind!r}")
    try:
        return cls.from_wire(m)
    except (TypeError, AttributeError) as exc:
        raise ProtocolError(f"malformed {cls.t}: {exc}") from None
