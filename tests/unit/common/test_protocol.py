"""The agent <-> controller protocol: round trips, and every malformed frame a ProtocolError."""

from __future__ import annotations

import copy
import math
import random
from typing import Any

import msgpack
import pytest

from common.protocol import (
    AGENT_FEATURES,
    MAX_BOTS_PER_FRAME,
    MAX_FRAME_BYTES,
    PROTOCOL_VERSION,
    BackupState,
    BotSpec,
    BotStatus,
    Desired,
    FilesRequest,
    FilesResponse,
    Heartbeat,
    Hello,
    LogRequest,
    LogResponse,
    MarketDataStats,
    PoolStats,
    ProtocolError,
    RestoreRequest,
    RestoreResponse,
    UpstreamStats,
    check_relpath,
    decode,
    encode,
)


def spec(bot_id: str = "bot-1", port: int = 9000, **over: Any) -> BotSpec:
    values: dict[str, Any] = {
        "id": bot_id,
        "port": port,
        "command": ["freqtrade", "trade", "--config", "config.json"],
        "files": {
            "config.json": b'{"a": 1}',
            "user_data/strategies/SampleStrategy.py": b"class SampleStrategy: ...\n",
        },
        "run": "running",
        "nonce": 2,
    }
    values.update(over)
    return BotSpec(**values)


def status(bot_id: str = "bot-1", **over: Any) -> BotStatus:
    values: dict[str, Any] = {
        "id": bot_id,
        "state": "RUNNING",
        "pid": 1234,
        "since": 1700000000.5,
        "exit_status": 0,
        "ping_ok": True,
        "ping_ms": 1.25,
        "rss": 123456789,
        "cpu": 3.5,
    }
    values.update(over)
    return BotStatus(**values)


def market_data() -> MarketDataStats:
    return MarketDataStats(
        "RUNNING", 1 << 20, 12,
        [UpstreamStats("binance", "https://api.binance.com", 100, 80, 10, 10, 2, 0, 0, 24, 480,
                       0, 0.0),
         UpstreamStats("binance", "http://[::1]:8700", 5, 0, 0, 5, 5, 0, 1, 0, 0, 1, 12.5),
         UpstreamStats("kraken", "other", 1, 0, 0, 1, 1, 0, 0, 0, 0, 0, 0.0)],
    )  # fmt: skip


def sample_messages() -> list[Any]:
    return [
        Hello("pool-1", "t" * 64, "0.1.0", 10, 9000, [status(), status("bot-2", state="FATAL")]),
        Hello("pool-2", "tok", "1", 1, 65535),
        Heartbeat(
            7,
            3,
            [
                status(uss=300 << 20, nice=19),
                status("b2", state="ABSENT", pid=0, ping_ok=None, ping_ms=None),
            ],
            PoolStats(1 << 30, 2 << 30, 12.5),
            "RUNNING",
        ),
        Heartbeat(1, 0, [], PoolStats()),
        Heartbeat(8, 2, [status(oom_kills=3)], PoolStats(1, 2, 0.5, True, "cgroup-v1"), "RUNNING"),
        Heartbeat(
            9,
            2,
            [status(nice=19, busy_since=1764500000.5)],
            PoolStats(1, 2, 0.5, busy_policy="idle"),
            "RUNNING",
        ),
        Heartbeat(2, 0, [], PoolStats(), "RUNNING", market_data()),
        Heartbeat(3, 0, [], PoolStats(), "ABSENT", MarketDataStats("BACKOFF")),
        Heartbeat(5, 0, [], PoolStats(), "RUNNING", MarketDataStats("RUNNING", holder="stranger")),
        Heartbeat(
            6,
            0,
            [],
            PoolStats(),
            "RUNNING",
            MarketDataStats("RUNNING", holder="stranger", routed=["bot-1", "bot-2"]),
        ),
        Desired(5, [spec(), spec("bot-2", 9001, run="stopped", nonce=0)], purge=["gone-1"]),
        Desired(0, [], launch="exec", preloader_nonce=3),
        Desired(2, [spec("bot-3", 9003, memory=512 << 20, cpu=0.5)]),
        Desired(1, [], market_data=False),
        LogRequest(9, "bot-1", 4096),
        LogResponse(9, b"line 1\nline 2\n", ""),
        LogResponse(10, b"", "no such bot"),
        Heartbeat(4, 0, [], PoolStats(), backup=BackupState(False, "No space left", 3, 1.5e9)),
        RestoreRequest(11, "bot-1", "tradesv3.dryrun.sqlite", "20261130T124300.123456Z"),
        RestoreResponse(11, "", "tradesv3.sqlite.before-restore-20261130T124300.000001Z"),
        RestoreResponse(12, "the bot is running"),
        FilesRequest(13, "bot-1", "export", "a" * 64),
        FilesRequest(14, "bot-1", "import", "b" * 64, "0123456789abcdef" * 4),
        FilesResponse(13, "", absent=True),
        FilesResponse(14, "sha256 mismatch"),
    ]


@pytest.mark.parametrize("msg", sample_messages(), ids=lambda m: type(m).__name__)
def test_every_frame_type_round_trips(msg: Any) -> None:
    data = encode(msg)
    assert isinstance(data, bytes)
    decoded = decode(data)
    assert type(decoded) is type(msg)
    assert decoded == msg
    raw = msgpack.unpackb(data, raw=False)
    assert raw["t"] == msg.t
    assert raw["v"] == PROTOCOL_VERSION


def test_decode_accepts_a_bytearray() -> None:
    assert decode(bytearray(encode(LogRequest(1, "b", 10)))) == LogRequest(1, "b", 10)


def test_every_frame_type_is_covered() -> None:
    assert {type(m).t for m in sample_messages()} == {
        "hello",
        "heartbeat",
        "desired",
        "log_request",
        "log_response",
        "restore_request",
        "restore_response",
        "files_request",
        "files_response",
    }


@pytest.mark.parametrize(
    "fields",
    [{"op": "delete"}, {"token": "../../etc"}, {"token": "A" * 64}, {"token": "a" * 63},
     {"sha256": "z" * 64}, {"bot": "../x"}],
)  # fmt: skip
def test_a_files_request_carries_only_checked_values(fields: dict[str, Any]) -> None:
    wire = {"t": "files_request", "v": PROTOCOL_VERSION, "id": 1, "bot": "bot-1",
            "op": "import", "token": "a" * 64, "sha256": "b" * 64, **fields}  # fmt: skip
    with pytest.raises(ProtocolError):
        decode(msgpack.packb(wire, use_bin_type=True))


@pytest.mark.parametrize(
    ("db", "point"),
    [("../etc/passwd", "20261130T124300.123456Z"), ("tradesv3.sqlite", "../../x"),
     ("other.sqlite", "20261130T124300.123456Z"), ("tradesv3.sqlite", "20261130T124300Z"),
     ("tradesv3.sqlite", None)],
)  # fmt: skip
def test_a_restore_request_names_only_a_snapshot(db: Any, point: Any) -> None:
    body = {"t": "restore_request", "v": PROTOCOL_VERSION, "id": 1, "bot": "b1", "db": db,
            "point": point}  # fmt: skip
    rejected(body)


# -- malformed frames ---------------------------------------------------------------------


def wire(msg: Any) -> dict[str, Any]:
    return msgpack.unpackb(encode(msg), raw=False)


def pack(body: Any) -> bytes:
    return msgpack.packb(body, use_bin_type=True)


def rejected(body: Any) -> ProtocolError:
    data = body if isinstance(body, bytes | bytearray | str) else pack(body)
    with pytest.raises(ProtocolError) as info:
        decode(data)  # type: ignore[arg-type]
    return info.value


def desired_wire(**bot_over: Any) -> dict[str, Any]:
    m = wire(Desired(1, [spec()]))
    m["bots"][0].update(bot_over)
    return m


@pytest.mark.parametrize(
    "data",
    [b"", b"\xc1", b"\x92\x01", b"\xdc\xff\xff", b"\x81\xa1t", "not bytes", None, 42],
    ids=repr,
)
def test_not_msgpack_or_not_bytes(data: Any) -> None:
    with pytest.raises(ProtocolError):
        decode(data)


@pytest.mark.parametrize("body", [[1, 2], "hello", 5, None, True, b"raw"], ids=repr)
def test_frame_that_is_not_a_map(body: Any) -> None:
    rejected(body)


def test_extra_data_after_the_frame() -> None:
    rejected(encode(LogRequest(1, "b", 10)) + b"\x00")


def test_non_string_map_keys() -> None:
    rejected(b"\x81\x01\x01")  # {1: 1}


@pytest.mark.parametrize("version", [None, 0, 2, "1", 1.0, True, [1], {"v": 1}], ids=repr)
def test_wrong_protocol_version(version: Any) -> None:
    m = wire(LogRequest(1, "b", 10))
    if version is None:
        del m["v"]
    else:
        m["v"] = version
    rejected(m)


@pytest.mark.parametrize("kind", [None, "", "Hello", "bogus", 1, True, b"hello", [1], {"t": 1}])
def test_unknown_frame_type(kind: Any) -> None:
    m = wire(LogRequest(1, "b", 10))
    if kind is None:
        del m["t"]
    else:
        m["t"] = kind
    rejected(m)


HOSTILE_IDS = ["../x", "a b", "x\n[program:evil]", "", "-x", "x" * 65, "a/b", 7, None]


@pytest.mark.parametrize("bad", HOSTILE_IDS, ids=repr)
def test_hostile_ids_everywhere(bad: Any) -> None:
    rejected(desired_wire(id=bad))
    m = wire(Hello("pool-1", "tok", "1", 10, 9000))
    m["pool_id"] = bad
    rejected(m)
    m = wire(Heartbeat(1, 1, [status()], PoolStats()))
    m["bots"][0]["id"] = bad
    rejected(m)
    m = wire(LogRequest(1, "b", 10))
    m["bot"] = bad
    rejected(m)
    m = wire(Desired(1, [], purge=["ok"]))
    m["purge"] = ["ok", bad]
    rejected(m)


@pytest.mark.parametrize(
    "path",
    [
        "../../etc/passwd",
        "..",
        "a/../b",
        "/abs",
        "/etc/passwd",
        ".hidden",
        "user_data/.hidden",
        "a//b",
        "a/",
        "",
        "a\\b",
        "con fig.json",
        "x\n",
        "a/b/c/d/e",
        "x" * 129,
        "-flag",
    ],
    ids=repr,
)
def test_hostile_file_paths(path: str) -> None:
    with pytest.raises(ProtocolError):
        check_relpath(path)
    m = desired_wire()
    m["bots"][0]["files"] = {path: b"x"}
    rejected(m)


@pytest.mark.parametrize("path", ["config.json", "user_data/strategies/S.py", "a/b/c/d", "_x"])
def test_safe_file_paths(path: str) -> None:
    assert check_relpath(path) == path


@pytest.mark.parametrize(
    "override",
    [
        {"port": True},
        {"port": "9000"},
        {"port": 0},
        {"port": 65536},
        {"port": 9000.0},
        {"nonce": True},
        {"nonce": -1},
        {"nonce": 2**64 - 1},
        {"nonce": 1.5},
        {"run": "paused"},
        {"run": 1},
        {"command": []},
        {"command": "freqtrade trade"},
        {"command": ["freqtrade", ""]},
        {"command": ["freqtrade", 1]},
        {"command": ["x"] * 65},
        {"command": ["x" * 1025]},
        {"files": []},
        {"files": {"config.json": "text, not bytes"}},
        {"files": {"config.json": b"x" * (1024 * 1024 + 1)}},
        {"files": {f"f{i}": b"" for i in range(33)}},
        {"files": {b"config.json": b"x"}},
    ],
    ids=repr,
)
def test_wrong_bot_spec_fields(override: dict[str, Any]) -> None:
    rejected(desired_wire(**override))


def test_missing_bot_spec_fields() -> None:
    for key in ("id", "port", "command", "files", "run", "nonce"):
        m = desired_wire()
        del m["bots"][0][key]
        rejected(m)


BOT_STATUS_OVERRIDES: list[dict[str, Any]] = [
    {"state": "running"},
    {"state": "DEAD"},
    {"state": None},
    {"pid": True},
    {"pid": -1},
    {"pid": 2**31 + 1},
    {"since": "yesterday"},
    {"since": -1.0},
    {"since": math.inf},
    {"since": math.nan},
    {"exit": "1"},
    {"exit": True},
    {"ping_ok": 1},
    {"ping_ok": "yes"},
    {"ping_ms": -0.5},
    {"ping_ms": True},
    {"rss": -1},
    {"rss": 1.5},
    {"rss": False},
    {"cpu": "high"},
    {"cpu": 1e20},
    {"uss": -1},
    {"uss": 1.5},
    {"uss": True},
    {"uss": "1g"},
    {"nice": 20},
    {"nice": -21},
    {"nice": 1.0},
    {"busy_since": -1.0},
    {"busy_since": "now"},
    {"busy_since": True},
    {"busy_since": math.inf},
]


@pytest.mark.parametrize("override", BOT_STATUS_OVERRIDES, ids=repr)
def test_wrong_bot_status_fields(override: dict[str, Any]) -> None:
    m = wire(Heartbeat(1, 1, [status()], PoolStats()))
    m["bots"][0].update(override)
    rejected(m)
    m = wire(Hello("pool-1", "tok", "1", 10, 9000, [status()]))
    m["programs"][0].update(override)
    rejected(m)


FIELD_OVERRIDES: list[tuple[Any, str, Any]] = [
    (Hello("p", "tok", "1", 10, 9000), "capacity", True),
    (Hello("p", "tok", "1", 10, 9000), "capacity", 0),
    (Hello("p", "tok", "1", 10, 9000), "capacity", 1001),
    (Hello("p", "tok", "1", 10, 9000), "port_start", 70000),
    (Hello("p", "tok", "1", 10, 9000), "token", 123),
    (Hello("p", "tok", "1", 10, 9000), "token", "t" * 257),
    (Hello("p", "tok", "1", 10, 9000), "version", "v" * 65),
    (Hello("p", "tok", "1", 10, 9000), "programs", {}),
    (Hello("p", "tok", "1", 10, 9000), "programs", ["not a map"]),
    (Heartbeat(1, 1, [], PoolStats()), "seq", True),
    (Heartbeat(1, 1, [], PoolStats()), "seq", -1),
    (Heartbeat(1, 1, [], PoolStats()), "gen", "1"),
    (Heartbeat(1, 1, [], PoolStats()), "pool", None),
    (Heartbeat(1, 1, [], PoolStats()), "pool", {"mem_used": -1, "mem_limit": 0, "cpu": 0}),
    (Heartbeat(1, 1, [], PoolStats()), "pool", {"mem_used": 0, "mem_limit": True}),
    (Heartbeat(1, 1, [], PoolStats()), "bots", None),
    (Heartbeat(1, 1, [], PoolStats()), "pool", {"mem_used": 0, "mem_limit": 0, "busy_policy": 1}),
    (
        Heartbeat(1, 1, [], PoolStats()),
        "pool",
        {"mem_used": 0, "mem_limit": 0, "busy_policy": "Idle; rm -rf"},
    ),
    (
        Heartbeat(1, 1, [], PoolStats()),
        "pool",
        {"mem_used": 0, "mem_limit": 0, "busy_policy": "x" * 17},
    ),
    (Heartbeat(1, 1, [], PoolStats()), "preloader", "DANCING"),
    (Heartbeat(1, 1, [], PoolStats()), "preloader", None),
    (Desired(1, []), "gen", True),
    (Desired(1, []), "bots", {"a": 1}),
    (Desired(1, []), "bots", [1]),
    (Desired(1, []), "purge", "bot"),
    (Desired(1, []), "launch", "fork"),
    (Desired(1, []), "launch", None),
    (Desired(1, []), "preloader_nonce", -1),
    (LogRequest(1, "b", 10), "id", True),
    (LogRequest(1, "b", 10), "max_bytes", 0),
    (LogRequest(1, "b", 10), "max_bytes", 1024 * 1024 + 1),
    (LogResponse(1, b""), "data", "text"),
    (LogResponse(1, b""), "data", b"x" * (1024 * 1024 + 1)),
    (LogResponse(1, b""), "error", b"bytes"),
    (LogResponse(1, b""), "error", "e" * 1025),
]


@pytest.mark.parametrize(("msg", "key", "value"), FIELD_OVERRIDES, ids=repr)
def test_wrong_field_types_and_ranges(msg: Any, key: str, value: Any) -> None:
    m = wire(msg)
    m[key] = value
    rejected(m)


def test_too_many_bots() -> None:
    m = wire(Heartbeat(1, 1, [], PoolStats()))
    m["bots"] = [status(f"b{i}").to_wire() for i in range(MAX_BOTS_PER_FRAME + 1)]
    rejected(m)
    m = wire(Desired(1, []))
    m["bots"] = [spec(f"b{i}", 1 + i, files={}).to_wire() for i in range(MAX_BOTS_PER_FRAME + 1)]
    rejected(m)
    m = wire(Desired(1, []))
    m["purge"] = [f"b{i}" for i in range(MAX_BOTS_PER_FRAME + 1)]
    rejected(m)


def test_the_bot_limit_itself_is_accepted() -> None:
    hb = Heartbeat(1, 1, [status(f"b{i}") for i in range(MAX_BOTS_PER_FRAME)], PoolStats())
    assert decode(encode(hb)) == hb


def test_oversized_frame() -> None:
    m = wire(LogResponse(1, b""))
    m["padding"] = b"x" * MAX_FRAME_BYTES
    error = rejected(m)
    assert "size" in str(error)


def test_duplicate_ids_or_ports_in_desired() -> None:
    rejected(wire(Desired(1, [spec("a", 9000), spec("a", 9001)])))
    rejected(wire(Desired(1, [spec("a", 9000), spec("b", 9000)])))


# -- fuzzing: only ProtocolError, or a valid message ---------------------------------------

HOSTILE_VALUES: list[Any] = [
    None, True, False, 0, -1, 2**63, 2**64 - 1, -(2**63), 1.5, math.nan, math.inf, "", "x" * 300,
    "../x", "a b", "x\n[program:evil]", b"", b"\xff", [], [1], [None], {}, {"a": 1}, {"t": "hello"},
    msgpack.ExtType(5, b"ext"), [[[[]]]], {"id": "a"},
]  # fmt: skip


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix]
    if isinstance(value, dict):
        for k, v in value.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            out += _paths(v, (*prefix, i))
    return out


def _replace(value: Any, path: tuple[Any, ...], new: Any) -> Any:
    if not path:
        return new
    parent = value
    for p in path[:-1]:
        parent = parent[p]
    parent[path[-1]] = new
    return value


def _check(data: bytes) -> None:
    try:
        msg = decode(data)
    except ProtocolError:
        return
    # A frame that decodes must be a complete, valid message that re-encodes the same way.
    assert decode(encode(msg)) == msg


def test_fuzz_random_bytes() -> None:
    rng = random.Random(20240601)
    for _ in range(400):
        _check(rng.randbytes(rng.randint(0, 200)))
    # Random bytes behind a valid map header reach deeper into the decoder.
    for _ in range(200):
        _check(b"\x83\xa1v\x01\xa1t" + rng.randbytes(rng.randint(0, 100)))


def test_fuzz_byte_mutations_of_valid_frames() -> None:
    rng = random.Random(7)
    frames = [encode(m) for m in sample_messages()]
    for _ in range(600):
        data = bytearray(rng.choice(frames))
        for _ in range(rng.randint(1, 4)):
            op = rng.randrange(3)
            pos = rng.randrange(len(data) + 1)
            if op == 0 and data:
                data[min(pos, len(data) - 1)] = rng.randrange(256)
            elif op == 1:
                data[pos:pos] = rng.randbytes(rng.randint(1, 4))
            elif data:
                del data[pos : pos + rng.randint(1, 4)]
        _check(bytes(data))


def test_fuzz_structural_mutations_of_valid_frames() -> None:
    rng = random.Random(99)
    bodies = [wire(m) for m in sample_messages()]
    for _ in range(600):
        body = copy.deepcopy(rng.choice(bodies))
        for _ in range(rng.randint(1, 2)):
            path = rng.choice(_paths(body))
            if path and rng.random() < 0.2 and isinstance(body, dict):
                # Drop the field instead of replacing it.
                parent = body
                for p in path[:-1]:
                    parent = parent[p]
                if isinstance(parent, dict):
                    del parent[path[-1]]
                    continue
            body = _replace(body, path, copy.deepcopy(rng.choice(HOSTILE_VALUES)))
        _check(pack(body))


def test_an_agents_features_are_announced_and_absent_from_older_agents() -> None:
    hello = Hello("pool-1", "tok", "1", 10, 9000, features=["held"])
    assert decode(encode(hello)) == hello
    m = wire(hello)
    del m["features"]  # an agent from before features
    assert decode(pack(m)).features == []
    for bad in (["x" * 33], [1], "held"):
        m["features"] = bad
        rejected(m)


def test_the_freqtrade_version_is_announced_and_absent_from_older_agents() -> None:
    hello = Hello("pool-1", "tok", "1", 10, 9000, freqtrade="2026.9")
    assert decode(encode(hello)) == hello
    m = wire(hello)
    del m["freqtrade"]  # an agent from before the field
    assert decode(pack(m)).freqtrade == ""
    for bad in ("x" * 65, 2026):
        m["freqtrade"] = bad
        rejected(m)
    # A controller from before the field reads a newer agent's hello: unknown keys are
    # ignored, as this one ignores a later agent's.
    m = {**wire(hello), "a_later_field": [1]}
    assert decode(pack(m)) == hello


def test_a_fenced_agent_says_so_and_older_agents_and_controllers_do_not_mind() -> None:
    hello = Hello("pool-1", "tok", "1", 10, 9000, features=["fence"], fenced=True)
    assert decode(encode(hello)) == hello
    m = wire(hello)
    assert m["fenced"] is True
    # Not fenced: the key is left out, so a hello is what it was before fencing.
    assert "fenced" not in wire(Hello("pool-1", "tok", "1", 10, 9000))
    del m["fenced"]  # an agent from before fencing
    assert decode(pack(m)).fenced is False
    for bad in (1, "yes"):
        m["fenced"] = bad
        rejected(m)
    assert "fence" in AGENT_FEATURES


def test_an_agent_says_its_fence_timeout_and_older_ones_do_not() -> None:
    hello = Hello("pool-1", "tok", "1", 10, 9000, features=["fence"], fence_timeout_ms=30000)
    assert decode(encode(hello)) == hello
    m = wire(hello)
    assert m["fence_timeout_ms"] == 30000
    assert "fence_timeout_ms" not in wire(Hello("pool-1", "tok", "1", 10, 9000))  # never fences
    del m["fence_timeout_ms"]  # an agent from before it
    assert decode(pack(m)).fence_timeout_ms == 0
    for bad in (-1, "30000", 1.5, 24 * 3600 * 1000 + 1):
        m["fence_timeout_ms"] = bad
        rejected(m)


def test_held_is_a_run_state() -> None:
    m = desired_wire(run="held")
    assert decode(pack(m)).bots[0].run == "held"
    rejected(desired_wire(run="paused"))


MARKET_DATA_OVERRIDES: list[tuple[dict[str, Any], str]] = [
    ({"state": "SLEEPING"}, "md"),
    ({"cache_bytes": -1}, "md"),
    ({"upstreams": {}}, "md"),
    ({"upstreams": [{}] * 65}, "md"),
    ({"holder": 1}, "md"),
    ({"routed": "bot-1"}, "md"),
    ({"routed": ["../x"]}, "md"),
    ({"routed": [1]}, "md"),
    ({"routed": ["b"] * 1001}, "md"),
    ({"exchange": "Binance"}, "upstream"),
    ({"exchange": "b" * 33}, "upstream"),
    ({"origin": "ftp://x"}, "upstream"),
    ({"origin": "https://x/path?q=1"}, "upstream"),
    ({"origin": "https://" + "x" * 400}, "upstream"),
    ({"hits": -1}, "upstream"),
    ({"hits": True}, "upstream"),
    ({"used_weight": 1.5}, "upstream"),
    ({"backoff_s": -1}, "upstream"),
    ({"backoff_s": math.inf}, "upstream"),
]


@pytest.mark.parametrize(("override", "where"), MARKET_DATA_OVERRIDES, ids=repr)
def test_wrong_market_data_fields(override: dict[str, Any], where: str) -> None:
    m = wire(Heartbeat(1, 1, [], PoolStats(), "RUNNING", market_data()))
    (m["md"] if where == "md" else m["md"]["upstreams"][0]).update(override)
    rejected(m)


def test_market_data_is_absent_from_older_agents_heartbeats() -> None:
    m = wire(Heartbeat(1, 1, [], PoolStats()))
    assert "md" not in m
    assert decode(msgpack.packb(m)).market_data is None


def test_a_bots_own_memory_is_absent_from_older_agents_and_ignored_by_older_controllers() -> None:
    m = wire(Heartbeat(1, 1, [status(uss=123 << 20)], PoolStats()))
    assert decode(msgpack.packb(m)).bots[0].uss == 123 << 20
    # An agent from before the field sends no `uss`: not measured.
    del m["bots"][0]["uss"]
    assert decode(msgpack.packb(m)).bots[0].uss is None
    # A controller from before it decodes the keys it knows: an extra one is no error.
    m["bots"][0]["uss"], m["bots"][0]["some_later_field"] = 1 << 20, [1, 2]
    assert decode(msgpack.packb(m)).bots[0].rss == status().rss


def test_the_oom_guard_is_optional_both_ways() -> None:
    m = wire(Heartbeat(1, 1, [], PoolStats(oom_guard=True)))
    assert m["pool"]["oom"] is True
    assert decode(msgpack.packb(m)).pool.oom_guard is True
    assert "oom" not in wire(Heartbeat(1, 1, [], PoolStats()))["pool"]  # an older agent's
    m["pool"]["oom"] = "yes"
    rejected(m)


def test_a_port_holder_of_a_newer_agent_is_read_as_unknown_not_refused() -> None:
    m = wire(Heartbeat(1, 1, [], PoolStats(), "RUNNING", market_data()))
    m["md"]["holder"] = "somebody-new"
    hb = decode(pack(m))
    assert isinstance(hb, Heartbeat) and hb.market_data is not None
    assert hb.market_data.holder is None


def test_routed_bots_are_absent_from_older_agents_heartbeats() -> None:
    m = wire(Heartbeat(1, 1, [], PoolStats(), "RUNNING", market_data()))
    assert "routed" not in m["md"]
    hb = decode(pack(m))
    assert isinstance(hb, Heartbeat) and hb.market_data is not None
    assert hb.market_data.routed is None
    m["md"]["routed"] = ["bot-1"]
    hb = decode(pack(m))
    assert isinstance(hb, Heartbeat) and hb.market_data is not None
    assert hb.market_data.routed == ["bot-1"]


def test_a_bots_busy_state_is_optional_both_ways() -> None:
    hb = Heartbeat(1, 1, [status(busy_since=1764500000.5)], PoolStats(busy_policy="nice"))
    m = wire(hb)
    assert (m["bots"][0]["busy_since"], m["pool"]["busy_policy"]) == (1764500000.5, "nice")
    assert decode(msgpack.packb(m)) == hb
    # Not deprioritised, or the rule off: nothing sent, as an agent from before it sends.
    quiet = wire(Heartbeat(1, 1, [status()], PoolStats()))
    assert "busy_since" not in quiet["bots"][0] and "busy_policy" not in quiet["pool"]
    old = decode(msgpack.packb(quiet))
    assert old.bots[0].busy_since is None and old.pool.busy_policy is None
    # A controller from before it decodes the keys it knows: the new ones are no error
    # (as for any later field), and a newer agent's policy word is taken as it is.
    m["bots"][0]["some_later_field"], m["pool"]["busy_policy"] = 1, "deadline"
    assert decode(msgpack.packb(m)).pool.busy_policy == "deadline"
