"""Public answers kept for as long as they are valid, within a bound in bytes (LRU).

Only public answers (the same for every bot) are ever put here. Expiry times are given by
the caller (agent/marketdata/lifetime.py) and compared with the time the caller passes in,
so tests move time on instead of sleeping.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

Key = tuple[str, tuple[tuple[str, str], ...]]  # upstream URL without query, sorted params
ENTRY_OVERHEAD = 256  # bytes of bookkeeping counted per entry besides its content
SWEEP_EVERY = 512  # puts between sweeps of expired entries


@dataclass(frozen=True, slots=True)
class Answer:
    """An upstream answer as the proxy serves it: status, the headers kept, the body."""

    status: int
    headers: tuple[tuple[str, str], ...]
    body: bytes


@dataclass(slots=True)
class _Entry:
    answer: Answer
    expires_at: float
    size: int


def size_of(key: Key, answer: Answer) -> int:
    text = len(key[0]) + sum(len(k) + len(v) for k, v in key[1])
    headers = sum(len(k) + len(v) for k, v in answer.headers)
    return ENTRY_OVERHEAD + text + headers + len(answer.body)


class AnswerCache:
    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.bytes = 0
        self._entries: OrderedDict[Key, _Entry] = OrderedDict()
        self._puts = 0

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: Key, now: float) -> Answer | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        if entry.expires_at <= now:
            self._drop(key)
            return None
        self._entries.move_to_end(key)
        return entry.answer

    def put(self, key: Key, answer: Answer, expires_at: float, now: float) -> bool:
        """Keep an answer until `expires_at`; False when it is not kept (expired, or larger
        than a quarter of the whole cache: one answer must not flush everything else)."""
        size = size_of(key, answer)
        if expires_at <= now or size > self.max_bytes // 4:
            return False
        if key in self._entries:
            self._drop(key)
        self._puts += 1
        if self._puts % SWEEP_EVERY == 0 or self.bytes + size > self.max_bytes:
            self.sweep(now)
        while self._entries and self.bytes + size > self.max_bytes:
            self._drop(next(iter(self._entries)))  # the least recently used
        self._entries[key] = _Entry(answer, expires_at, size)
        self.bytes += size
        return True

    def sweep(self, now: float) -> None:
        """Drop every expired entry."""
        for key in [k for k, e in self._entries.items() if e.expires_at <= now]:
            self._drop(key)

    def _drop(self, key: Key) -> None:
        self.bytes -= self._entries.pop(key).size
