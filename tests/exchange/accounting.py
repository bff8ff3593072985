"""Request and weight counters (per endpoint, per client), and Binance's weight budget per
remote address: used weight per wall-clock minute, 429 over the limit, then a 418 ban for an
address that keeps calling after its 429s."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import asdict, dataclass, field

from tests.exchange import errors

MINUTE_MS = 60_000


@dataclass
class Count:
    requests: int = 0
    weight: int = 0

    def add(self, weight: int) -> None:
        self.requests += 1
        self.weight += weight


class Accounting:
    """What the emulator answered: totals, per endpoint, per client and endpoint, per status."""

    def __init__(self, now_ms: int) -> None:
        self.reset(now_ms)

    def reset(self, now_ms: int) -> None:
        self.since_ms = now_ms
        self.total = Count()
        self.statuses: dict[int, int] = defaultdict(int)
        self.endpoints: dict[str, Count] = defaultdict(Count)
        self.clients: dict[str, dict[str, Count]] = defaultdict(lambda: defaultdict(Count))

    def record(self, client: str, endpoint: str, weight: int, status: int) -> None:
        self.total.add(weight)
        self.statuses[status] += 1
        self.endpoints[endpoint].add(weight)
        self.clients[client][endpoint].add(weight)

    def snapshot(self, now_ms: int) -> dict:
        return {
            "since_ms": self.since_ms,
            "now_ms": now_ms,
            "totals": {
                **asdict(self.total),
                "statuses": {str(s): n for s, n in sorted(self.statuses.items())},
            },
            "endpoints": {e: asdict(c) for e, c in sorted(self.endpoints.items())},
            "clients": {
                client: {e: asdict(c) for e, c in sorted(per.items())}
                for client, per in sorted(self.clients.items())
            },
        }


@dataclass
class Address:
    minute: int = -1
    used: int = 0  # weight in the current minute
    rejected: int = 0  # 429s answered in the current minute
    banned_until_ms: int = 0
    totals: Count = field(default_factory=Count)
    answered_429: int = 0
    answered_418: int = 0


class WeightBudget:
    """`limit` weight per address and minute (0 = unlimited); after `ban_after` 429s in a
    minute, the address's next request over the limit bans it for `ban_seconds` (418)."""

    def __init__(self, limit: int, ban_seconds: float, ban_after: int) -> None:
        self.limit, self.ban_seconds, self.ban_after = limit, ban_seconds, ban_after
        self.addresses: dict[str, Address] = defaultdict(Address)

    def reset(self) -> None:
        self.addresses.clear()

    def _current(self, address: str, now_ms: int) -> Address:
        a = self.addresses[address]
        if a.minute != now_ms // MINUTE_MS:
            a.minute, a.used, a.rejected = now_ms // MINUTE_MS, 0, 0
        return a

    def used(self, address: str, now_ms: int) -> int:
        """The weight the address used in the current minute (X-MBX-USED-WEIGHT-1M)."""
        return self._current(address, now_ms).used if address in self.addresses else 0

    def admit(self, address: str, weight: int, now_ms: int) -> None:
        """Charge a request's weight, or raise the 429 or 418 that Binance would answer."""
        a = self._current(address, now_ms)
        if a.banned_until_ms > now_ms:
            a.answered_418 += 1
            raise errors.banned(a.banned_until_ms, -(-(a.banned_until_ms - now_ms) // 1000))
        if self.limit and a.used + weight > self.limit:
            if a.rejected >= self.ban_after:
                a.banned_until_ms = now_ms + int(self.ban_seconds * 1000)
                a.answered_418 += 1
                raise errors.banned(a.banned_until_ms, -(-int(self.ban_seconds * 1000) // 1000))
            a.rejected += 1
            a.answered_429 += 1
            next_minute = (now_ms // MINUTE_MS + 1) * MINUTE_MS
            raise errors.too_much_weight(self.limit, -(-(next_minute - now_ms) // 1000))
        a.used += weight
        a.totals.add(weight)

    def snapshot(self, now_ms: int) -> dict:
        out = {}
        for address in sorted(self.addresses):
            a = self._current(address, now_ms)
            out[address] = {
                **asdict(a.totals),
                "used_weight_1m": a.used,
                "answered_429": a.answered_429,
                "answered_418": a.answered_418,
                "banned_until_ms": a.banned_until_ms if a.banned_until_ms > now_ms else None,
            }
        return out
