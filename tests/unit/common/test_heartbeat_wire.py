"""Heartbeats in one pass (msgspec) accept and refuse exactly what the general decoder does,
and frames of the previous version decode, and are sent, byte for byte as before."""

from __future__ import annotations

import copy
import json
import math
import random
import typing
from dataclasses import fields
from pathlib import Path
from typing import Any

import msgpack
import pytest

from common import heartbeat_wire
from common.protocol import (
    MAX_BOTS_PER_FRAME,
    MAX_UPSTREAMS,
    PORT_HOLDERS,
    PROTOCOL_VERSION,
    BackupState,
    BotStatus,
    Heartbeat,
    MarketDataStats,
    PoolStats,
    ProtocolError,
    UpstreamStats,
    decode,
    decode_general,
    encode,
)
from tests.unit.common import skew_frames
from tests.unit.common.test_protocol import (
    BOT_STATUS_OVERRIDES,
    FIELD_OVERRIDES,
    HOSTILE_IDS,
    HOSTILE_VALUES,
    MARKET_DATA_OVERRIDES,
    _paths,
    _replace,
    market_data,
    pack,
    sample_messages,
    status,
    wire,
)


def test_each_struct_has_its_classs_fields_in_order() -> None:
    pairs = [
        (heartbeat_wire.BotStatusWire, BotStatus),
        (heartbeat_wire.PoolStatsWire, PoolStats),
        (heartbeat_wire.UpstreamStatsWire, UpstreamStats),
        (heartbeat_wire.MarketDataStatsWire, MarketDataStats),
        (heartbeat_wire.BackupStateWire, BackupState),
    ]
    for struct, cls in pairs:
        names = getattr(cls, "__struct_fields__", None) or [f.name for f in fields(cls)]
        assert struct.__struct_fields__ == tuple(names)
    hints = typing.get_type_hints(heartbeat_wire.HeartbeatWire)
    assert hints["v"] == typing.Literal[PROTOCOL_VERSION]


def full_heartbeat() -> Heartbeat:
    return Heartbeat(
        9, 4, [status(uss=300 << 20, nice=19, port_ok=True), status("b2", state="ABSENT", pid=0,
               ping_ok=None, ping_ms=None, exit_status=None), status("b3", state="EXITED")],
        PoolStats(1 << 30, 2 << 30, 12.5, oom_guard=False), "RUNNING", market_data(),
        BackupState(False, "No space left", 3, 1.5e9),
    )  # fmt: skip


def test_an_agents_heartbeats_take_the_one_pass() -> None:
    heartbeats = [m for m in sample_messages() if isinstance(m, Heartbeat)]
    for hb in [*heartbeats, full_heartbeat()]:
        data = encode(hb)
        assert heartbeat_wire.decode(data) is not None
        assert decode(data) == hb == decode_general(data)


def test_the_proxys_port_holder_takes_the_one_pass_too() -> None:
    hint = typing.get_type_hints(heartbeat_wire.MarketDataStatsWire)["holder"]
    literal, _none = typing.get_args(hint)
    assert set(typing.get_args(literal)) == PORT_HOLDERS
    for holder in sorted(PORT_HOLDERS):
        hb = full_heartbeat()
        assert hb.market_data is not None
        hb.market_data.holder = holder
        hb.market_data.routed = ["bot-1", "b2"] if holder == "stranger" else None
        data = encode(hb)
        assert heartbeat_wire.decode(data) is not None
        assert decode(data) == hb == decode_general(data)


# -- the corpus: every malformed case of test_protocol.py, edge encodings, fuzzing ---------


def _heartbeat_frames() -> list[bytes]:
    base = wire(full_heartbeat())
    out = [pack(base)]
    for override in BOT_STATUS_OVERRIDES:
        m = copy.deepcopy(base)
        m["bots"][0].update(override)
        out.append(pack(m))
    for msg, key, value in FIELD_OVERRIDES:
        m = wire(msg)
        m[key] = value
        out.append(pack(m))
    for override, where in MARKET_DATA_OVERRIDES:
        m = copy.deepcopy(base)
        (m["md"] if where == "md" else m["md"]["upstreams"][0]).update(override)
        out.append(pack(m))
    for bad in HOSTILE_IDS:
        m = copy.deepcopy(base)
        m["bots"][1]["id"] = bad
        out.append(pack(m))
    # Every field of every map in a heartbeat: absent, nil, the other kind of number, a
    # bool, a string, beside an unknown field (a newer agent's).
    for path in _paths(base):
        if not path or not isinstance(path[-1], str):
            continue
        for change in ("drop", None, 1, 1.0, True, "x", 2**64 - 1, -1, "unknown"):
            m = copy.deepcopy(base)
            parent = m
            for p in path[:-1]:
                parent = parent[p]
            if change == "drop":
                del parent[path[-1]]
            elif change == "unknown":
                parent["a_later_field"] = {"nested": [1, None]}
            else:
                parent[path[-1]] = change
            out.append(pack(m))
    return out


def _edge_frames() -> list[bytes]:
    hb = Heartbeat(1, 1, [status()], PoolStats())
    data = encode(hb)
    bots = [status(f"b{i}").to_wire() for i in range(MAX_BOTS_PER_FRAME + 1)]
    ups = market_data().upstreams[0].to_wire()
    out = [
        data + b"\x00",  # extra data after the frame
        data[:-1],  # truncated
        bytearray(data),
        pack({**wire(hb), "bots": bots}),
        pack({**wire(hb), "bots": bots[:-1]}),
        pack({**wire(hb), "t": "heartbeat", "v": 1, "x": msgpack.ExtType(5, b"e")}),
        with_pair(data, b"\xa1x\xc7\x0d\xff" + b"bad timestamp"),  # a timestamp that is not
        b"\x81\xa1t\xa9heartbeat",
    ]
    for upstreams in ([ups] * MAX_UPSTREAMS, [ups] * (MAX_UPSTREAMS + 1)):
        m = wire(Heartbeat(1, 1, [], PoolStats(), "RUNNING", market_data()))
        m["md"]["upstreams"] = upstreams
        out.append(pack(m))
    # Strings that are not UTF-8 (an encoded surrogate, an overlong encoding) where any text
    # is accepted, and map keys that are not strings.
    for bad in (b"\xed\xa0\x80", b"\xc0\x80", b"\xff"):
        m = pack({**wire(Heartbeat(1, 1, [], PoolStats(), backup=BackupState())), "z": 0})
        out.append(m.replace(b"\xa1z", bytes([0xA0 | len(bad)]) + bad))
        m = pack(wire(Heartbeat(1, 1, [], PoolStats(), backup=BackupState(False, "EE"))))
        out.append(m.replace(b"\xa2EE", bytes([0xA0 | len(bad)]) + bad))
    out.append(pack({**wire(hb), b"seq": 5}))
    out.append(pack({**wire(hb), 7: 5}))
    # Keys twice: the last one counts, for both decoders.
    out += [with_pair(data, b"\xa3seq\x05"), with_pair(data, b"\xa1t\xa5hello"),
            with_pair(data, b"\xa3seq\xc3"), with_pair(data, b"\xa1v\x02")]  # fmt: skip
    return out


def with_pair(data: bytes, pair: bytes) -> bytes:
    """A frame (a map of up to 14 keys) with one more key and value, encoded by hand."""
    assert 0x80 <= data[0] < 0x8F
    return bytes([data[0] + 1]) + data[1:] + pair


def _fuzzed_frames() -> list[bytes]:
    rng = random.Random(19)
    frames = [encode(m) for m in sample_messages() if isinstance(m, Heartbeat)]
    frames.append(encode(full_heartbeat()))
    out = []
    for _ in range(1500):
        data = bytearray(rng.choice(frames))
        for _ in range(rng.randint(1, 3)):
            pos = rng.randrange(len(data))
            data[pos] = rng.randrange(256)
        out.append(bytes(data))
    bodies = [msgpack.unpackb(f) for f in frames]
    for _ in range(1500):
        body = copy.deepcopy(rng.choice(bodies))
        path = rng.choice(_paths(body))
        out.append(pack(_replace(body, path, copy.deepcopy(rng.choice(HOSTILE_VALUES)))))
    return out


def _outcome(decoder: Any, data: bytes) -> Any:
    try:
        return decoder(data)
    except ProtocolError:
        return ProtocolError


def test_both_decoders_accept_and_refuse_the_same_frames() -> None:
    corpus = _heartbeat_frames() + _edge_frames() + _fuzzed_frames()
    taken = refused_to_general = 0
    for data in corpus:
        general = _outcome(decode_general, data)
        one_pass = heartbeat_wire.decode(data)
        if one_pass is not None:
            taken += 1
            # What the one pass accepts, the general decoder accepts, with the same values.
            assert general is not ProtocolError, data
        elif general is not ProtocolError:
            refused_to_general += 1
        assert _outcome(decode, data) == general, data
    # Both ways are exercised: frames the one pass takes, and valid ones it leaves.
    assert taken > 200 and refused_to_general > 50, (taken, refused_to_general)


@pytest.mark.parametrize("value", [None, 0, 7, 1.5e9])
def test_a_since_or_cpu_of_nil_or_an_int_decodes_as_before(value: Any) -> None:
    m = wire(Heartbeat(1, 1, [status()], PoolStats()))
    m["bots"][0]["since"] = m["bots"][0]["cpu"] = m["pool"]["cpu"] = value
    expected = 0.0 if value is None else value
    hb = decode(pack(m))
    assert isinstance(hb, Heartbeat)
    assert hb.bots[0].since == hb.bots[0].cpu == hb.pool.cpu == expected


def test_a_newer_agents_unknown_fields_are_ignored() -> None:
    m = wire(full_heartbeat())
    m["later"] = [1]
    m["bots"][0]["later"] = {"x": math.pi}
    m["pool"]["later"] = None
    assert decode(pack(m)) == full_heartbeat()


def test_a_refused_heartbeat_keeps_the_general_decoders_reason() -> None:
    m = wire(Heartbeat(1, 1, [status()], PoolStats()))
    m["bots"][0]["pid"] = -1
    with pytest.raises(ProtocolError, match="field 'pid' must be an int in range"):
        decode(pack(m))


# -- version skew: frames of the previous version (main before this change) ---------------

RECORDED = json.loads((Path(__file__).parent / "frames_051ba9a.json").read_text())


@pytest.mark.parametrize("name", sorted(RECORDED))
def test_frames_of_the_previous_version_decode_and_are_sent_the_same(name: str) -> None:
    recorded = bytes.fromhex(RECORDED[name])
    msg = skew_frames.messages()[name]
    # An agent (or controller) of the previous version is understood...
    assert decode(recorded) == msg
    # ...and sent byte for byte what this version sends, so it understands this one.
    assert encode(msg) == recorded
    if name.startswith("heartbeat"):
        assert heartbeat_wire.decode(recorded) is not None


# Frames the recorded version did not have: sent only to agents whose hello lists their
# feature ("files": a bot's directory moved through the agents, POOL_STORAGE=node).
NEWER_FRAMES = {"files_request", "files_response"}


def test_every_frame_type_was_recorded() -> None:
    assert {type(m).t for m in skew_frames.messages().values()} == {
        type(m).t for m in sample_messages()
    } - NEWER_FRAMES
