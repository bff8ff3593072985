"""Faults on demand: latency, error statuses and hanging answers for chosen requests.

A fault is posted as JSON, every field optional:
`{"latency_ms": 200, "status": 503, "rate": 0.5, "timeout": true, "count": 10,
  "path": "/api/v3/klines", "client": "bot-1"}`.
It matches requests to `path` (or below it) from `client`; of those, it fires on a
deterministic share `rate` (a hash of the seed, the fault and the request's number), and only
`count` times when set. Firing delays by `latency_ms`, then hangs until the client gives up
(`timeout`), answers `status` with Binance's error body, or else lets the request through.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass

from tests.exchange.prices import hash_with, unit

CLIENT_RE = re.compile(r"[A-Za-z0-9_-]{1,64}")
FIELDS = {"latency_ms", "status", "rate", "timeout", "count", "path", "client"}


@dataclass
class Fault:
    id: int
    latency_ms: float = 0.0
    status: int | None = None
    rate: float = 1.0
    timeout: bool = False
    count: int | None = None  # fires left; None = forever
    path: str | None = None
    client: str | None = None
    seen: int = 0  # matching requests so far
    fired: int = 0

    def matches(self, path: str, client: str) -> bool:
        if self.client is not None and client != self.client:
            return False
        if self.path is None:
            return True
        return path == self.path or path.startswith(self.path.rstrip("/") + "/")


def _check(spec: object) -> dict:
    """The fields of one posted fault, validated; ValueError names what is wrong."""
    if not isinstance(spec, dict):
        raise ValueError("a fault is a JSON object")
    if unknown := set(spec) - FIELDS:
        raise ValueError(f"unknown fields: {sorted(unknown)}")

    def number(name: str, lo: float, hi: float, kind: type = float) -> None:
        value = spec.get(name)
        if value is None:
            return
        if isinstance(value, bool) or not isinstance(value, kind | int):
            raise ValueError(f"{name} must be a number")
        if not lo <= value <= hi:
            raise ValueError(f"{name} must be within {lo}..{hi}")

    number("latency_ms", 0, 600_000)
    number("status", 100, 599, int)
    number("rate", 0.0, 1.0)
    number("count", 1, 10**9, int)
    if not isinstance(spec.get("timeout", False), bool):
        raise ValueError("timeout must be true or false")
    path = spec.get("path")
    if path is not None and not (isinstance(path, str) and path.startswith("/")):
        raise ValueError("path must start with /")
    client = spec.get("client")
    if client is not None and not (isinstance(client, str) and CLIENT_RE.fullmatch(client)):
        raise ValueError("client must match [A-Za-z0-9_-]{1,64}")
    return {k: v for k, v in spec.items() if v is not None}


class Faults:
    """The active faults, in the order they were added (the first that fires applies)."""

    def __init__(self, seed: int) -> None:
        self.seed = seed
        self.faults: list[Fault] = []
        self._next_id = 1

    def add(self, posted: object) -> list[Fault]:
        """Add one fault (a JSON object) or several (a list); all or none."""
        specs = [_check(s) for s in (posted if isinstance(posted, list) else [posted])]
        added = []
        for spec in specs:
            added.append(Fault(id=self._next_id, **spec))
            self._next_id += 1
        self.faults.extend(added)
        return added

    def clear(self) -> None:
        self.faults.clear()

    def listing(self) -> list[dict]:
        return [asdict(f) for f in self.faults]

    def fire(self, path: str, client: str) -> Fault | None:
        """The fault that applies to this request, if any (and count it)."""
        for fault in self.faults:
            if not fault.matches(path, client):
                continue
            fault.seen += 1
            if fault.rate < 1.0 and unit(hash_with(self.seed, fault.id, fault.seen)) >= fault.rate:
                continue
            fault.fired += 1
            if fault.count is not None:
                fault.count -= 1
                if fault.count == 0:
                    self.faults.remove(fault)
            return fault
        return None
