"""The frames that keep a pool in step: the agent's hello and heartbeats, and the
controller's desired state of the pool (a spec per bot)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from common.ids import is_valid_id
from common.protocol.fields import (
    MAX_FILE_BYTES,
    ProtocolError,
    as_map,
    bounded_list,
    check_relpath,
    int_in,
    opt_number,
    short_str,
    typed,
    valid_id,
)
from common.protocol.status import BackupState, BotStatus, MarketDataStats, PoolStats
from common.states import PROCESS_STATES_BY_NAME, ProcessState, RunState

MAX_ARGS = 64
# Run states by their wire word (common/states.py says what each means).
_RUN_STATES_BY_NAME: dict[str, RunState] = {s.value: s for s in RunState}
# What an agent can do beyond protocol 1, announced in its hello: an agent from before a
# feature would reject frames that use it, so the controller asks only agents that have it.
# "fence": it stops its bots when cut off from the controller for AGENT_FENCE_TIMEOUT.
AGENT_FEATURES = ("held", "backup", "fence", "market_data_switch", "files")
# How a pool starts its bots: forked from its preloader (sharing memory), or plain exec.
LAUNCH_MODES = ("preload", "exec")


@dataclass(slots=True)
class BotSpec:
    """What one bot should be: the controller's desired state for it."""

    id: str
    port: int
    command: list[str]
    files: dict[str, bytes]
    run: RunState = RunState.RUNNING
    nonce: int = 0
    # Its limits where its pool gives each bot a cgroup (agent/cgroups.py): memory in bytes,
    # CPU in cores (0: none). Sent only when set: older agents see nothing new.
    memory: int = 0
    cpu: float = 0.0

    def to_wire(self) -> dict[str, Any]:
        wire = {
            "id": self.id, "port": self.port, "command": self.command,
            "files": self.files, "run": self.run, "nonce": self.nonce,
        }  # fmt: skip
        if self.memory:
            wire["memory"] = self.memory
        if self.cpu:
            wire["cpu"] = self.cpu
        return wire

    @classmethod
    def from_wire(cls, raw: object) -> BotSpec:
        m = as_map(raw, "bot spec")
        command = bounded_list(m, "command", MAX_ARGS)
        if not command or not all(isinstance(a, str) and 0 < len(a) <= 1024 for a in command):
            raise ProtocolError("command must be a non-empty list of strings")
        files = typed(m, "files", dict)
        if len(files) > 32:
            raise ProtocolError("too many files")
        for path, content in files.items():
            check_relpath(path)
            if not isinstance(content, bytes) or len(content) > MAX_FILE_BYTES:
                raise ProtocolError(f"file {path!r} must be bytes up to {MAX_FILE_BYTES}")
        run = _RUN_STATES_BY_NAME.get(short_str(m, "run"))
        if run is None:
            raise ProtocolError("run must be running, stopped or held")
        return cls(
            id=valid_id(m, "id"), port=int_in(m, "port", 1, 65535), command=command,
            files=files, run=run, nonce=int_in(m, "nonce"),
            memory=int_in(m, "memory") if "memory" in m else 0,
            cpu=min(opt_number(m, "cpu") or 0.0, 1024.0),
        )  # fmt: skip


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
    # Its AGENT_FENCE_TIMEOUT (0: it never fences): the controller waits for the longer of
    # it and its own before it replaces a lost pool (they differ during an upgrade).
    fence_timeout_ms: int = 0

    def to_wire(self) -> dict[str, Any]:
        wire = {
            "pool_id": self.pool_id, "token": self.token, "version": self.version,
            "capacity": self.capacity, "port_start": self.port_start,
            "programs": [p.to_wire() for p in self.programs], "features": self.features,
            "freqtrade": self.freqtrade,
        }  # fmt: skip
        if self.fenced:
            wire["fenced"] = True
        if self.fence_timeout_ms:
            wire["fence_timeout_ms"] = self.fence_timeout_ms
        return wire

    @classmethod
    def from_wire(cls, m: dict[str, Any]) -> Hello:
        # Absent from older agents' hellos: they have none of the features.
        features = bounded_list(m, "features", 32) if "features" in m else []
        if not all(isinstance(f, str) and len(f) <= 32 for f in features):
            raise ProtocolError("features must be short strings")
        return cls(
            pool_id=valid_id(m, "pool_id"), token=short_str(m, "token", 256),
            version=short_str(m, "version", 64), capacity=int_in(m, "capacity", 1, 1000),
            port_start=int_in(m, "port_start", 1, 65535),
            programs=[BotStatus.from_wire(p) for p in bounded_list(m, "programs")],
            features=features,
            # Absent from older agents' hellos; an older controller ignores it.
            freqtrade=short_str(m, "freqtrade", 64) if "freqtrade" in m else "",
            # Absent from older agents' hellos, and when not fenced.
            fenced=bool(typed(m, "fenced", bool, optional=True)),
            # Absent from older agents' hellos, and when the agent does not fence.
            fence_timeout_ms=int_in(m, "fence_timeout_ms", 0, 24 * 3600 * 1000)
            if "fence_timeout_ms" in m else 0,
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
        name = short_str(m, "preloader", 16)
        preloader = PROCESS_STATES_BY_NAME.get(name)
        if preloader is None:
            raise ProtocolError(f"unknown preloader state {name!r}")
        md, bk = m.get("md"), m.get("bk")
        return cls(
            seq=int_in(m, "seq"), gen=int_in(m, "gen"),
            bots=[BotStatus.from_wire(b) for b in bounded_list(m, "bots")],
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
        bots = [BotSpec.from_wire(b) for b in bounded_list(m, "bots")]
        if len({b.id for b in bots}) != len(bots) or len({b.port for b in bots}) != len(bots):
            raise ProtocolError("bot ids and ports must be unique")
        purge = bounded_list(m, "purge")
        if not all(is_valid_id(p) for p in purge):
            raise ProtocolError("purge must list valid ids")
        launch = short_str(m, "launch", 16)
        if launch not in LAUNCH_MODES:
            raise ProtocolError(f"unknown launch mode {launch!r}")
        market_data = typed(m, "market_data", bool, optional=True)
        return cls(
            gen=int_in(m, "gen"), bots=bots, purge=purge,
            launch=launch, preloader_nonce=int_in(m, "preloader_nonce"),
            market_data=market_data is not False,
        )  # fmt: skip
