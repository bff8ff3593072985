"""Heartbeats decoded and validated in one pass: msgspec's typed msgpack structs.

A heartbeat is most of what the controller reads (one per pool every few seconds, ten
bot statuses each). These structs are its fields with the same types and bounds as
`common/protocol/` checks by hand, so msgspec decodes and validates a frame in one pass
in C. They accept only a subset of what the general decoder accepts: every field it
requires, no field it does not know, no nil where the general decoder reads nil as a
default. `decode` returns None for anything else, and the general decoder then decides,
so both accept and refuse exactly the same frames (tests/unit/common/test_heartbeat_wire.py
runs the malformed corpus through both). The wire format is unchanged: msgpack maps.

Each struct's fields are in the order of its class in common/protocol/status.py, which builds
that class from them positionally (`msgspec.structs.astuple`).
"""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

from common.ids import ID_PATTERN
from common.states import ProcessState

PROTOCOL_VERSION = 1
MAX_BOTS_PER_FRAME = 1000
MAX_UPSTREAMS = 64

_Meta = msgspec.Meta
# The general decoder's bounds: ints from msgpack (never bools, never floats), numbers
# (ints or floats, never bools, never NaN) from 0 to below 1e15.
Count = Annotated[int, _Meta(ge=0, le=2**63 - 1)]
Number = Annotated[float, _Meta(ge=0, lt=1e15)]
BotId = Annotated[str, _Meta(pattern=rf"\A{ID_PATTERN}\Z")]
Exchange = Annotated[str, _Meta(pattern=r"\A[a-z][a-z0-9]{0,31}\Z")]
_ORIGIN = r"\A(https?://[A-Za-z0-9.:\[\]_-]{1,300}|other)\Z"
Origin = Annotated[str, _Meta(max_length=310, pattern=_ORIGIN)]
# A busy bot's scheduling policy (agent/cpu.py): "idle" or "nice" today; a newer agent's word
# is taken as it is, bounded.
Policy = Annotated[str, _Meta(pattern=r"\A[a-z]{1,16}\Z")]


class _Strict(msgspec.Struct, forbid_unknown_fields=True, gc=False):
    """An unknown field is refused (to the general decoder, which ignores it). Each
    subclass is keyword-only, so a field the general decoder requires is required here too
    although one before it has a default."""


class BotStatusWire(_Strict, kw_only=True):
    id: BotId
    state: ProcessState
    pid: Annotated[int, _Meta(ge=0, le=2**31)]
    since: Number = 0.0
    exit_status: int | None = msgspec.field(default=None, name="exit")
    ping_ok: bool | None = None
    ping_ms: Number | None = None
    rss: Count
    cpu: Number = 0.0
    port_ok: bool | None = None
    uss: Count | None = None
    nice: Annotated[int, _Meta(ge=-20, le=19)] | None = None
    oom_kills: Count | None = None
    busy_since: Number | None = None


class PoolStatsWire(_Strict, kw_only=True):
    mem_used: Count
    mem_limit: Count
    cpu: Number = 0.0
    oom_guard: bool | None = msgspec.field(default=None, name="oom")
    cgroup: Literal["cgroup-v1", "cgroup-v2"] | None = None
    busy_policy: Policy | None = None


class UpstreamStatsWire(_Strict, kw_only=True):
    exchange: Exchange
    origin: Origin
    requests: Count
    hits: Count
    coalesced: Count
    upstream: Count
    passthrough: Count
    refused: Count
    errors: Count
    weight: Count
    used_weight: Count
    backoffs: Count
    backoff_s: Number = 0.0


class MarketDataStatsWire(_Strict, kw_only=True):
    state: ProcessState
    cache_bytes: Count
    cache_entries: Count
    upstreams: Annotated[list[UpstreamStatsWire], _Meta(max_length=MAX_UPSTREAMS)]
    # Who holds the proxy's port (protocol.PORT_HOLDERS; absent from agents that do not look).
    holder: Literal["proxy", "none", "stranger"] | None = None
    routed: Annotated[list[BotId], _Meta(max_length=MAX_BOTS_PER_FRAME)] | None = None


class BackupStateWire(_Strict, kw_only=True):
    ok: bool
    error: Annotated[str, _Meta(max_length=512)]
    failures: Count
    last_ok: Number = 0.0


class HeartbeatWire(_Strict, kw_only=True):
    # Fields, not msgspec's tag: a tag may be absent when a struct is decoded by itself.
    t: Literal["heartbeat"]
    v: Literal[1]  # PROTOCOL_VERSION
    seq: Count
    gen: Count
    bots: Annotated[list[BotStatusWire], _Meta(max_length=MAX_BOTS_PER_FRAME)]
    pool: PoolStatsWire
    preloader: ProcessState
    md: MarketDataStatsWire | None = None
    bk: BackupStateWire | None = None


_DECODER = msgspec.msgpack.Decoder(HeartbeatWire)


def decode(data: bytes | bytearray) -> HeartbeatWire | None:
    """The heartbeat in `data`, or None: not a heartbeat these structs accept."""
    try:
        return _DECODER.decode(data)
    except msgspec.MsgspecError:
        return None
