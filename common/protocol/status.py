"""What an agent reports of its pool in each heartbeat: each bot's status, the pool's
figures, its market-data proxy and its backups."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import msgspec

from common.heartbeat_wire import MAX_UPSTREAMS
from common.ids import is_valid_id
from common.protocol.fields import (
    ProtocolError,
    as_map,
    bounded_list,
    int_in,
    opt_number,
    short_str,
    typed,
)
from common.states import PROCESS_STATES_BY_NAME, ProcessState

_NUMBER = (int, float)


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
    # The kernel's OOM kills in the bot's own cgroup so far (agent/cgroups.py); None where
    # it has none, or from agents older than the field (sent only when known).
    oom_kills: int | None = None
    # Since when (epoch seconds) its agent has deprioritised it as a busy bot (agent/cpu.py);
    # None: not now, or an agent from before the field (sent only when set).
    busy_since: float | None = None

    def to_wire(self) -> dict[str, Any]:
        wire = {
            "id": self.id, "state": self.state, "pid": self.pid, "since": self.since,
            "exit": self.exit_status, "ping_ok": self.ping_ok, "ping_ms": self.ping_ms,
            "rss": self.rss, "cpu": self.cpu, "port_ok": self.port_ok, "uss": self.uss,
            "nice": self.nice,
        }  # fmt: skip
        if self.oom_kills is not None:
            wire["oom_kills"] = self.oom_kills
        if self.busy_since is not None:
            wire["busy_since"] = self.busy_since
        return wire

    @classmethod
    def from_wire(cls, raw: object) -> BotStatus:
        # Every heartbeat carries one of these per bot: the checks are the helpers' checks,
        # inlined, because at 20,000 heartbeats a second their calls were most of the cost.
        # `type(x) is int` also refuses bools, as typed() does.
        m = as_map(raw, "bot status")
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
        oom_kills = get("oom_kills")
        if oom_kills is not None and (type(oom_kills) is not int or not 0 <= oom_kills < 2**63):
            raise ProtocolError("field 'oom_kills' must be an int in range")
        if exit_status is not None and type(exit_status) is not int:
            raise ProtocolError("field 'exit' must be an int")
        if ping_ok is not None and type(ping_ok) is not bool:
            raise ProtocolError("field 'ping_ok' must be a bool")
        if port_ok is not None and type(port_ok) is not bool:
            raise ProtocolError("field 'port_ok' must be a bool")
        since, ping_ms, cpu, busy = get("since"), get("ping_ms"), get("cpu"), get("busy_since")
        for value in (since, ping_ms, cpu, busy):
            if value is not None and (type(value) not in _NUMBER or not 0 <= value < 1e15):
                raise ProtocolError("since, ping_ms, cpu and busy_since must be numbers in range")
        return cls(
            bot_id, state, pid, since or 0.0, exit_status, ping_ok, ping_ms, rss, cpu or 0.0,
            port_ok, uss, nice, oom_kills, busy,
        )  # fmt: skip


@dataclass(slots=True)
class PoolStats:
    mem_used: int = 0
    mem_limit: int = 0
    cpu: float = 0.0
    # Whether the kernel's OOM killer takes a bot before any of the pool's machinery (every
    # bot's oom_score_adj above theirs); None: no bot runs, or an agent from before it.
    oom_guard: bool | None = None
    # "cgroup-v1" or "cgroup-v2" where each bot has a cgroup of its own (agent/cgroups.py);
    # None: none (or an agent from before it).
    cgroup: str | None = None
    # What the agent does to a busy bot (BOT_BUSY_POLICY: "idle" or "nice", agent/cpu.py);
    # None: nothing (BOT_BUSY_CPU 0), or an agent from before it.
    busy_policy: str | None = None

    def to_wire(self) -> dict[str, Any]:
        wire = {"mem_used": self.mem_used, "mem_limit": self.mem_limit, "cpu": self.cpu}
        if self.oom_guard is not None:
            wire["oom"] = self.oom_guard
        if self.cgroup is not None:
            wire["cgroup"] = self.cgroup
        if self.busy_policy is not None:
            wire["busy_policy"] = self.busy_policy
        return wire

    @classmethod
    def from_wire(cls, raw: object) -> PoolStats:
        m = as_map(raw, "pool stats")
        return cls(
            int_in(m, "mem_used"), int_in(m, "mem_limit"), opt_number(m, "cpu") or 0.0,
            typed(m, "oom", bool, optional=True), cgroup_mode(m.get("cgroup")),
            busy_policy(m.get("busy_policy")),
        )  # fmt: skip


CGROUP_MODES = ("cgroup-v1", "cgroup-v2")
_POLICY = re.compile(r"\A[a-z]{1,16}\Z")


def busy_policy(raw: object) -> str | None:
    """A busy bot's scheduling policy: "idle" or "nice" today, a newer agent's word as it is."""
    if raw is None:
        return None
    if type(raw) is not str or not _POLICY.match(raw):
        raise ProtocolError("field 'busy_policy' must be a short lowercase word")
    return raw


def cgroup_mode(raw: object) -> str | None:
    if raw is None:
        return None
    if raw not in CGROUP_MODES:
        raise ProtocolError(f"field 'cgroup' must be one of {', '.join(CGROUP_MODES)}")
    return str(raw)


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
        m = as_map(raw, "upstream stats")
        exchange, origin = short_str(m, "exchange", 32), short_str(m, "origin", 310)
        if not _EXCHANGE.match(exchange) or not _ORIGIN.match(origin):
            raise ProtocolError("bad exchange or origin in market-data stats")
        counters = {name: int_in(m, name) for name in _UPSTREAM_COUNTERS}
        return cls(exchange, origin, **counters, backoff_s=opt_number(m, "backoff_s") or 0.0)


# Who holds a market-data proxy's port (agent/marketdata/holder.py's Holder).
PORT_HOLDERS = frozenset({"proxy", "none", "stranger"})


@dataclass(slots=True)
class MarketDataStats:
    """The pool's market-data proxy: its process state (supervisord's), its cache, its
    upstreams. A proxy that does not answer has no cache or upstream figures. `holder`:
    who holds its port (agent/marketdata/holder.py; None from agents that do not look).
    `routed`: the running bots whose process started with its config through the proxy
    (None from agents that do not say)."""

    state: ProcessState
    cache_bytes: int = 0
    cache_entries: int = 0
    upstreams: list[UpstreamStats] = field(default_factory=list)
    holder: str | None = None
    routed: list[str] | None = None

    def to_wire(self) -> dict[str, Any]:
        wire = {
            "state": self.state, "cache_bytes": self.cache_bytes,
            "cache_entries": self.cache_entries,
            "upstreams": [u.to_wire() for u in self.upstreams],
        }  # fmt: skip
        if self.holder is not None:
            wire["holder"] = self.holder
        if self.routed is not None:
            wire["routed"] = list(self.routed)
        return wire

    @classmethod
    def from_wire(cls, raw: object) -> MarketDataStats:
        m = as_map(raw, "market-data stats")
        state = PROCESS_STATES_BY_NAME.get(short_str(m, "state", 16))
        if state is None:
            raise ProtocolError("unknown market-data proxy state")
        holder = typed(m, "holder", str, optional=True)
        if holder is not None and holder not in PORT_HOLDERS:
            holder = None  # a newer agent's word: not known here, and no reason to refuse
        routed = None
        if m.get("routed") is not None:
            routed = bounded_list(m, "routed")
            if not all(is_valid_id(b) for b in routed):
                raise ProtocolError("field 'routed' holds an invalid bot id")
        return cls(
            state, int_in(m, "cache_bytes"), int_in(m, "cache_entries"),
            [UpstreamStats.from_wire(u) for u in bounded_list(m, "upstreams", MAX_UPSTREAMS)],
            holder, routed,
        )  # fmt: skip


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
        m = as_map(raw, "backup state")
        return cls(typed(m, "ok", bool), short_str(m, "error", 512), int_in(m, "failures"),
                   opt_number(m, "last_ok") or 0.0)  # fmt: skip
