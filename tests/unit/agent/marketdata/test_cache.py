"""The answer cache: expiry by the time given, a bound in bytes, least recently used out."""

from __future__ import annotations

from agent.marketdata.cache import Answer, AnswerCache, size_of
from agent.marketdata.lifetime import FOREVER

T0 = 1000.0


def key(n: int):
    return (f"http://x/{n}", (("symbol", "A"),))


def answer(size: int) -> Answer:
    return Answer(200, (("Content-Type", "application/json"),), b"x" * size)


def test_expiry():
    cache = AnswerCache(1 << 20)
    assert cache.put(key(1), answer(10), T0 + 2, T0)
    assert cache.get(key(1), T0 + 1.99) == answer(10)
    assert cache.get(key(1), T0 + 2) is None
    assert len(cache) == 0 and cache.bytes == 0
    assert not cache.put(key(1), answer(10), T0, T0)  # expired already


def test_bounded_in_bytes_least_recently_used_first():
    one = size_of(key(1), answer(1000))
    cache = AnswerCache(one * 4)
    for n in range(4):
        cache.put(key(n), answer(1000), FOREVER, T0)
    cache.get(key(0), T0)  # used: key 1 is now the least recently used
    cache.put(key(4), answer(1000), FOREVER, T0)
    assert cache.get(key(1), T0) is None
    assert all(cache.get(key(n), T0) for n in (0, 2, 3, 4))
    assert cache.bytes <= cache.max_bytes


def test_expired_entries_go_before_live_ones():
    one = size_of(key(1), answer(1000))
    cache = AnswerCache(one * 4)
    cache.put(key(0), answer(1000), FOREVER, T0)
    for n in range(1, 4):
        cache.put(key(n), answer(1000), T0 + 1, T0)
    cache.put(key(4), answer(1000), FOREVER, T0 + 5)
    assert cache.get(key(0), T0 + 5) is not None
    assert len(cache) == 2


def test_an_answer_too_large_for_a_quarter_is_not_kept():
    cache = AnswerCache(10_000)
    assert not cache.put(key(1), answer(3000), FOREVER, T0)
    assert len(cache) == 0


def test_replacing_an_entry_counts_its_bytes_once():
    cache = AnswerCache(1 << 20)
    cache.put(key(1), answer(100), FOREVER, T0)
    cache.put(key(1), answer(200), FOREVER, T0)
    assert cache.bytes == size_of(key(1), answer(200))
