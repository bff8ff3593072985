"""The agent <-> controller protocol: msgpack maps over one binary WebSocket.

Every frame is a map with the type `t` and protocol version `v`. Decoding
validates types and bounds, so a malformed frame is a ProtocolError, never a
crash or an unchecked value further in.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import msgpack
import msgspec
from msgspec.structs import astuple

from common import heartbeat_wire
from common.heartbeat_wire import MAX_BOTS_PER_FRAME, MAX_UPSTREAMS, PROTOCOL_VERSION
from common.ids import is_valid_id
from common.states import PROCESS_STATES_BY_NAME, ProcessState, RunState

MAX_FRAME_BYTES = 8 * 1024 * 1024
MAX_FILE_BYTES = 1024 * 1024
MAX_ARGS = 64
# Run states by their wire word (common/states.py says what each means).
_RUN_STATES_BY_NAME: dict[str, RunState] = {s.value: s for s in RunState}
# What an agent can do beyond protocol 1, announced in its hello: an agent from before a
# feature would reject frames that use it, so the controller asks only agents that have it.
# "fence": it stops its bots when cut off from the controller for AGENT_FENCE_TIMEOUT.
AGENT_FEATURES = ("held", "backup", "fence")
# How a pool starts its bots: forked from its preloader (sharing memory), or plain exec.
LAUNCH_MODES = ("preload", "exec")
_NUMBER = (int, float)
_FILE_PART = re.compile(r"\A[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}\Z")


class ProtocolError(ValueError):
    """A frame that does not follow the protocol."""


def check_relpath(path: object) -> str:
    """A relative path of safe components: no '..', no absolute paths, no hidden files."""
    if not isinstance(path, str) or not path or len(path) > 256:
        raise ProtocolError("bad file path")
    parts = path.split("/")
    if len(parts) > 4 or not all(_FILE_PART.match(p) for p in parts):
        raise ProtocolError(f"bad file path {path!r}")
    return path


def _get(m: dict[str, Any], key: str, kind: type | tuple[type, ...], optional: bool = False):
    value = m.get(key)
    if value is None and optional:
        return None
    # bool is an int subclass; never accept it where a number is meant.
    if not isinstance(value, kind) or (isinstance(value, bool) and bool not in _tuple(kind)):
        raise ProtocolError(f"field {key!r} must be {kind}")
    return value


def _tuple(kind: type | tuple[type, ...]) -> tuple[type, ...]:
    return kind if isinstance(kind, tuple) else (kind,)


def _int(m: dict[str, Any], key: str, lo: int = 0, hi: int = 2**63 - 1) -> int:
    value = _get(m, key, int)
    if not lo <= value <= hi:
        raise ProtocolError(f"field {key!r} out of range")
    return value


def _opt_num(m: dict[str, Any], key: str) -> float | None:
    value = _get(m, key, (int, float), optional=True)
    if value is not None and not 0 <= value < 1e15:
        raise ProtocolError(f"field {key!r} out of range")
    return value


def _str(m: dict[str, Any], key: str, max_len: int = 256) -> str:
    value = _get(m, key, str)
    if len(value) > max_len:
        raise ProtocolError(f"field {key!r} too long")
    return value


def _id(m: dict[str, Any], key: str) -> str:
    value = m.get(key)
    if not is_valid_id(value):
        raise ProtocolError(f"field {key!r} is not a valid id")
    return value


def _list(m: dict[str, Any], key: str, limit: int = MAX_BOTS_PER_FRAME) -> list[Any]:
    value = _get(m, key, list)
    if len(value) > limit:
        raise ProtocolError(f"field {key!r} has too many items")
    return value


def _map(value: object, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ProtocolError(f"{what} must be a map")
    return value


@dataclass(slots=True)
class BotSpec:
    """What one bot should be: the controller's desired state for it."""

    id: str
    port: int
    command: list[str]
    files: dict[str, bytes]
    run: RunState = RunState.RUNNING
    nonce: int = 0

    def to_wire(self) -> dict[str, Any]:
        return {
            "id": self.id, "port": self.port, "command": self.command,
            "files": self.files, "run": self.run, "nonce": self.nonce,
        }  # fmt: skip

    @classmethod
    def from_wire(cls, raw: object) -> BotSpec:
        m = _map(raw, "bot spec")
        command = _list(m, "command", MAX_ARGS)
        if not command or not all(isinstance(a, str) and 0 < len(a) <= 1024 for a in command):
            raise ProtocolError("command must be a non-empty list of strings")
        files = _get(m, "files", dict)
        if len(files) > 32:
            raise ProtocolError("too many files")
        for path, content in files.items():
            check_relpath(path)
            if not isinstance(content, bytes) or len(content) > MAX_FILE_BYTES:
                raise ProtocolError(f"file {path!r} must be bytes up to {MAX_FILE_BYTES}")
        run = _RUN_STATES_BY_NAME.get(_str(m, "run"))
        if run is None:
            raise ProtocolError("run must be running, stopped or held")
        return cls(
            id=_id(m, "id"), port=_int(m, "port", 1, 65535), command=command,
            files=files, run=run, nonce=_int(m, "nonce"),
        )  # fmt: skip


class BotStatus(msgspec.Struct, gc=False):
    """What one bot is, as its agent observed it. A msgspec struct rather than a dataclass:
    ten are built from each heartbeat's one pass, in C, and the controller keeps one per bot
    out of the garbage collector's way (only numbers and strings: no cycles)."""

    id: str
    state: ProcessState
    pid: int = 0
    since: float = 0.0
    exit_status: int | None = None
    ping_ok: bool | None = None
    ping_ms: float | None = None
    rss: int = 0
    cpu: float = 0.0
    # Whether the socket listening on the bot's port belongs to the bot's own user
    # (None where bots have no users of their own, or nothing listens yet).
    port_ok: bool | None = None
    # The bot's own memory (USS: its private pages, not those it shares with the
    # preloader); None where it was not measured, or from agents older than the field
    # (an older controller ignores it: decoders take the keys they know).
    uss: int | None = None
    # Its scheduling priority (nice, -20 to 19; 19: reniced as a busy bot, agent/cpu.py);
    # None where not read, or from agents older than the field.
    nice: int | None = None

    def to_wire(self) -> dict[str, Any]:
        return {
            "id": self.id, "state": self.state, "pid": self.pid, "since": self.since,
            "exit": self.exit_status, "ping_ok": self.ping_ok, "ping_ms": self.ping_ms,
            "rss": self.rss, "cpu": self.cpu, "port_ok": self.port_ok, "uss": self.uss,
            "nice": self.nice,
        }  # fmt: skip

    @classmethod
    def from_wire(cls, raw: object) -> BotStatus:
        # Every heartbeat carries one of these per bot: the checks are the helpers' checks,
        # inlined, because at 20,000 heartbeats a second their calls were most of the cost.
        # `type(x) is int` also refuses bools, as _get does.
        m = _map(raw, "bot status")
        get = m.get
        bot_id, name, pid, rss, uss = get("id"), get("state"), get("pid"), get("rss"), get("uss")
        exit_status, ping_ok, port_ok = get("exit"), get("ping_ok"), get("port_ok")
        if not is_valid_id(bot_id):
            raise ProtocolError("field 'id' is not a valid id")
        state = PROCESS_STATES_BY_NAME.get(name) if type(name) is str else None
        if state is None:
            raise ProtocolError(f"unknown process state {name!r}")
        if type(pid) is not int or not 0 <= pid <= 2**31:
            raise ProtocolError("field 'pid' must be an int in range")
        if type(rss) is not int or not 0 <= rss < 2**63:
            raise ProtocolError("field 'rss' must be an int in range")
        if uss is not None and (type(uss) is not int or not 0 <= uss < 2**63):
            raise ProtocolError("field 'uss' must be an int in range")
        nice = get("nice")
        if nice is not None and (type(nice) is not int or not -20 <= nice <= 19):
            raise ProtocolError("field 'nice' must be an int from -20 to 19")
        if exit_status is not None and type(exit_status) is not int:
            raise ProtocolError("field 'exit' must be an int")
        if ping_ok is not None and type(ping_ok) is not bool:
            raise ProtocolError("field 'ping_ok' must be a bool")
        if port_ok is not None and type(port_ok) is not bool:
            raise ProtocolError("field 'port_ok' must be a bool")
        since, ping_ms, cpu = get("since"), get("ping_ms"), get("cpu")
        for value in (since, ping_ms, cpu):
            if value is not None and (type(value) not in _NUMBER or not 0 <= value < 1e15):
                raise ProtocolError("since, ping_ms and cpu must be numbers in range")
        return cls(
            bot_id, state, pid, since or 0.0, exit_status, ping_ok, ping_ms, rss, cpu or 0.0,
            port_ok, uss, nice,
        )  # fmt: skip


@dataclass(slots=True)
class PoolStats:
    mem_used: int = 0
    mem_limit: int = 0
    cpu: float = 0.0
    # Whether the kernel's OOM killer takes a bot before any of the pool's machinery (every
    # bot's oom_score_adj above theirs); None: no bot runs, or an agent from before it.
    oom_guard: bool | None = None

    def to_wire(self) -> dict[str, Any]:
        wire = {"mem_used": self.mem_used, "mem_limit": self.mem_limit, "cpu": self.cpu}
        if self.oom_guard is not None:
            wire["oom"] = self.oom_guard
        return wire

    @classmethod
    def from_wire(cls, raw: object) -> PoolStats:
        m = _map(raw, "pool stats")
        return cls(
            _int(m, "mem_used"), _int(m, "mem_limit"), _opt_num(m, "cpu") or 0.0,
            _get(m, "oom", bool, optional=True),
        )  # fmt: skip


# A pool's market-data proxy (agent/marketdata): what it did per exchange and upstream.
_UPSTREAM_COUNTERS = ("requests", "hits", "coalesced", "upstream", "passthrough", "refused",
                      "errors", "weight", "used_weight", "backoffs")  # fmt: skip
_EXCHANGE = re.compile(r"\A[a-z][a-z0-9]{0,31}\Z")
_ORIGIN = re.compile(r"\A(https?://[A-Za-z0-9.:\[\]_-]{1,300}|other)\Z")


@dataclass(slots=True)
class UpstreamStats:
    """Counters of one upstream origin of one exchange, since the proxy started."""

    exchange: str
    origin: str  # scheme://host[:port], or "other" past MAX_UPSTREAMS
    requests: int = 0  # the bots' requests
    hits: int = 0  # answered from the cache
    coalesced: int = 0  # answered by a request already in flight
    upstream: int = 0  # sent to the exchange
    passthrough: int = 0  # of those, private or not in the table
    refused: int = 0  # answered by the proxy: backing off, or over the public share
    errors: int = 0  # the exchange unreachable or too slow
    weight: int = 0  # the table's weight of the public requests sent
    used_weight: int = 0  # the address's weight this minute, as the exchange last said
    backoffs: int = 0  # back-offs after a 429 or 418
    backoff_s: float = 0.0  # seconds of back-off left

    def to_wire(self) -> dict[str, Any]:
        wire = {name: getattr(self, name) for name in _UPSTREAM_COUNTERS}
        return {"exchange": self.exchange, "origin": self.origin, **wire,
                "backoff_s": self.backoff_s}  # fmt: skip

    @classmethod
    def from_wire(cls, raw: object) -> UpstreamStats:
        m = _map(raw, "upstream stats")
        exchange, origin = _str(m, "exchange", 32), _str(m, "origin", 310)
        if not _EXCHANGE.match(exchange) or not _ORIGIN.match(origin):
            raise ProtocolError("bad exchange or origin in market-data stats")
        counters = {name: _int(m, name) for name in _UPSTREAM_COUNTERS}
        return cls(exchange, origin, **counters, backoff_s=_opt_num(m, "backoff_s") or 0.0)


# Who holds a market-data proxy's port (agent/marketdata/holder.py's Holder).
PORT_HOLDERS = frozenset({"proxy", "none", "stranger"})


@dataclass(slots=True)
class MarketDataStats:
    """The pool's market-data proxy: its process state (supervisord's), its cache, its
    upstreams. A proxy that does not answer has no cache or upstream figures. `holder`:
    who holds its port (agent/marketdata/holder.py; None from agents that do not look)."""

    state: ProcessState
    cache_bytes: int = 0
    cache_entries: int = 0
    upstreams: list[UpstreamStats] = field(default_factory=list)
    holder: str | None = None

    def to_wire(self) -> dict[str, Any]:
        wire = {
            "state": self.state, "cache_bytes": self.cache_bytes,
            "cache_entries": self.cache_entries,
            "upstreams": [u.to_wire() for u in self.upstreams],
        }  # fmt: skip
        if self.holder is not None:
            wire["holder"] = self.holder
        return wire

    @classmethod
    def from_wire(cls, raw: object) -> MarketDataStats:
        m = _map(raw, "market-data stats")
        state = PROCESS_STATES_BY_NAME.get(_str(m, "state", 16))
        if state is None:
            raise ProtocolError("unknown market-data proxy state")
        holder = _get(m, "holder", str, optional=True)
        if holder is not None and holder not in PORT_HOLDERS:
            raise ProtocolError("unknown holder of the market-data proxy's port")
        return cls(
            state, _int(m, "cache_bytes"), _int(m, "cache_entries"),
            [UpstreamStats.from_wire(u) for u in _list(m, "upstreams", MAX_UPSTREAMS)], holder,
        )  # fmt: skip


# What a backup's file name may be: a database's snapshot, <stamp>.sqlite (agent/backups.py).
_POINT = re.compile(r"\A[0-9]{8}T[0-9]{6}\.[0-9]{6}Z\Z")
_DB_NAME = re.compile(r"\Atradesv3(\.dryrun)?\.sqlite\Z")


def check_restore_point(db: object, point: object) -> tuple[str, str]:
    """A restore point: one of FreqTrade's database names and a snapshot's time stamp."""
    if not isinstance(db, str) or not _DB_NAME.match(db):
        raise ProtocolError("bad database name")
    if not isinstance(point, str) or not _POINT.match(point):
        raise ProtocolError("bad restore point")
    return db, point


@dataclass(slots=True)
class BackupState:
    """How the pool's backups go: failing since the last success, and why (the target
    unreachable or full); `last_ok` the epoch seconds of the last round that wrote all."""

    ok: bool = True
    error: str = ""
    failures: int = 0  # rounds failed in a row
    last_ok: float = 0.0

    def to_wire(self) -> dict[str, Any]:
        return {"ok": self.ok, "error": self.error, "failures": self.failures,
                "last_ok": self.last_ok}  # fmt: skip

    @classmethod
    def from_wire(cls, raw: object) -> BackupState:
        m = _map(raw, "backup state")
        return cls(_get(m, "ok", bool), _str(m, "error", 512), _int(m, "failures"),
                   _opt_num(m, "last_ok") or 0.0)  # fmt: skip


@dataclass(slots=True)
class Hello:
    t = "hello"
    pool_id: str
    token: str
    version: str
    capacity: int
    port_start: int
    programs: list[BotStatus] = field(default_factory=list)
    features: list[str] = field(default_factory=list)
    # The FreqTrade version installed in the pool's image ("" if the agent cannot tell).
    freqtrade: str = ""
    # Whether the agent fenced its pool (stopped every bot) while the controller was away.
    fenced: bool = False

    def to_wire(self) -> dict[str, Any]:
        wire = {
            "pool_id": self.pool_id, "token": self.token, "version": self.version,
            "capacity": self.capacity, "port_start": self.port_start,
            "programs": [p.to_wire() for p in self.programs], "features": self.features,
            "freqtrade": self.freqtrade,
        }  # fmt: skip
        if self.fenced:
            wire["fenced"] = True
        return wire

    @classmethod
    def from_wire(cls, m: dict[str, Any]) -> Hello:
        # Absent from older agents' hellos: they have none of the features.
        features = _list(m, "features", 32) if "features" in m else []
        if not all(isinstance(f, str) and len(f) <= 32 for f in features):
            raise ProtocolError("features must be short strings")
        return cls(
            pool_id=_id(m, "pool_id"), token=_str(m, "token", 256), version=_str(m, "version", 64),
            capacity=_int(m, "capacity", 1, 1000), port_start=_int(m, "port_start", 1, 65535),
            programs=[BotStatus.from_wire(p) for p in _list(m, "programs")], features=features,
            # Absent from older agents' hellos; an older controller ignores it.
            freqtrade=_str(m, "freqtrade", 64) if "freqtrade" in m else "",
            # Absent from older agents' hellos, and when not fenced.
            fenced=bool(_get(m, "fenced", bool, optional=True)),
        )  # fmt: skip


@dataclass(slots=True)
class Heartbeat:
    t = "heartbeat"
    seq: int
    gen: int
    bots: list[BotStatus]
    pool: PoolStats
    # supervisord's state of the pool's preloader; ABSENT when the pool runs none.
    preloader: ProcessState = ProcessState.ABSENT
    # The pool's market-data proxy; None when it runs none (or the agent predates it).
    market_data: MarketDataStats | None = None
    # The pool's backups; None when it makes none (or the agent predates them).
    backup: BackupState | None = None

    def to_wire(self) -> dict[str, Any]:
        wire = {
            "seq": self.seq, "gen": self.gen,
            "bots": [b.to_wire() for b in self.bots], "pool": self.pool.to_wire(),
            "preloader": self.preloader,
        }  # fmt: skip
        if self.market_data is not None:
            wire["md"] = self.market_data.to_wire()
        if self.backup is not None:
            wire["bk"] = self.backup.to_wire()
        return wire

    @classmethod
    def from_wire(cls, m: dict[str, Any]) -> Heartbeat:
        name = _str(m, "preloader", 16)
        preloader = PROCESS_STATES_BY_NAME.get(name)
        if preloader is None:
            raise ProtocolError(f"unknown preloader state {name!r}")
        md, bk = m.get("md"), m.get("bk")
        return cls(
            seq=_int(m, "seq"), gen=_int(m, "gen"),
            bots=[BotStatus.from_wire(b) for b in _list(m, "bots")],
            pool=PoolStats.from_wire(m.get("pool")), preloader=preloader,
            market_data=None if md is None else MarketDataStats.from_wire(md),
            backup=None if bk is None else BackupState.from_wire(bk),
        )  # fmt: skip


@dataclass(slots=True)
class Desired:
    """The full desired state of one pool; `purge` names removed bots whose files go too.

    `launch` is how the pool starts its bots; raising `preloader_nonce` asks the agent to
    restart the pool's preloader (and with it every bot it forked) once. `market_data`
    False turns the pool's market-data proxy off (on: the pool runs one if it has a port);
    sent only when off, so that agents that know nothing of it see nothing new.
    """

    t = "desired"
    gen: int
    bots: list[BotSpec]
    purge: list[str] = field(default_factory=list)
    launch: str = "preload"
    preloader_nonce: int = 0
    market_data: bool = True

    def to_wire(self) -> dict[str, Any]:
        wire = {
            "gen": self.gen, "bots": [b.to_wire() for b in self.bots], "purge": self.purge,
            "launch": self.launch, "preloader_nonce": self.preloader_nonce,
        }  # fmt: skip
        if not self.market_data:
            wire["market_data"] = False
        return wire

    @classmethod
    def from_wire(cls, m: dict[str, Any]) -> Desired:
        bots = [BotSpec.from_wire(b) for b in _list(m, "bots")]
        if len({b.id for b in bots}) != len(bots) or len({b.port for b in bots}) != len(bots):
            raise ProtocolError("bot ids and ports must be unique")
        purge = _list(m, "purge")
        if not all(is_valid_id(p) for p in purge):
            raise ProtocolError("purge must list valid ids")
        launch = _str(m, "launch", 16)
        if launch not in LAUNCH_MODES:
            raise ProtocolError(f"unknown launch mode {launch!r}")
        market_data = _get(m, "market_data", bool, optional=True)
        return cls(
            gen=_int(m, "gen"), bots=bots, purge=purge,
            launch=launch, preloader_nonce=_int(m, "preloader_nonce"),
            market_data=market_data is not False,
        )  # fmt: skip


@dataclass(slots=True)
class LogRequest:
    """Controller asks for the tail of a bot's log; answered by a LogResponse with the same id."""

    t = "log_request"
    id: int
    bot: str
    max_bytes: int = 65536

    def to_wire(self) -> dict[str, Any]:
        return {"id": self.id, "bot": self.bot, "max_bytes": self.max_bytes}

    @classmethod
    def from_wire(cls, m: dict[str, Any]) -> LogRequest:
        return cls(_int(m, "id"), _id(m, "bot"), _int(m, "max_bytes", 1, MAX_FILE_BYTES))


@dataclass(slots=True)
class LogResponse:
    t = "log_response"
    id: int
    data: bytes = b""
    error: str = ""

    def to_wire(self) -> dict[str, Any]:
        return {"id": self.id, "data": self.data, "error": self.error}

    @classmethod
    def from_wire(cls, m: dict[str, Any]) -> LogResponse:
        data = _get(m, "data", bytes)
        if len(data) > MAX_FILE_BYTES:
            raise ProtocolError("log data too large")
        return cls(_int(m, "id"), data, _str(m, "error", 1024))


@dataclass(slots=True)
class RestoreRequest:
    """Controller asks the agent to put a held bot's database back from one of its
    snapshots (the current one is kept aside); answered by a RestoreResponse."""

    t = "restore_request"
    id: int
    bot: str
    db: str
    point: str

    def to_wire(self) -> dict[str, Any]:
        return {"id": self.id, "bot": self.bot, "db": self.db, "point": self.point}

    @classmethod
    def from_wire(cls, m: dict[str, Any]) -> RestoreRequest:
        db, point = check_restore_point(m.get("db"), m.get("point"))
        return cls(_int(m, "id"), _id(m, "bot"), db, point)


@dataclass(slots=True)
class RestoreResponse:
    t = "restore_response"
    id: int
    error: str = ""
    kept: str = ""  # where the database it replaced was put aside, in the bot's directory

    def to_wire(self) -> dict[str, Any]:
        return {"id": self.id, "error": self.error, "kept": self.kept}

    @classmethod
    def from_wire(cls, m: dict[str, Any]) -> RestoreResponse:
        return cls(_int(m, "id"), _str(m, "error", 1024), _str(m, "kept", 256))


Response = LogResponse | RestoreResponse
Message = Hello | Heartbeat | Desired | LogRequest | LogResponse | RestoreRequest | RestoreResponse
_TYPES: dict[str, Any] = {
    cls.t: cls
    for cls in (Hello, Heartbeat, Desired, LogRequest, LogResponse, RestoreRequest, RestoreResponse)
}


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
            [UpstreamStats(*astuple(u)) for u in md.upstreams], md.holder,
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
    """Any frame, by the checks above: the decoder every frame had before the heartbeats'
    one pass, and the reference that pass must agree with."""
    if not isinstance(data, bytes | bytearray) or len(data) > MAX_FRAME_BYTES:
        raise ProtocolError("frame must be bytes up to the size limit")
    try:
        # unpackb bounds every container by the frame's own length.
        raw = msgpack.unpackb(data, raw=False, strict_map_key=True)
    except (ValueError, msgpack.UnpackException) as exc:
        raise ProtocolError(f"not msgpack: {exc}") from None
    m = _map(raw, "frame")
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
