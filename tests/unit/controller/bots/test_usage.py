"""UsageHistory: a bounded hour of each bot's memory and CPU samples."""

from __future__ import annotations

from controller.bots.usage import UsageHistory


def test_samples_are_kept_for_the_window_and_bounded():
    h = UsageHistory(window=3600, step=30)
    for i in range(200):  # 100 minutes of rounds
        h.record(1000.0 + 30 * i, {"a": (i, 1.0)})
    samples = h.series("a")
    assert len(samples) == 121  # one hour, both ends included
    assert samples[0] == {"t": 1000.0 + 30 * 79, "memoryBytes": 79, "cpuPercent": 1.0}
    assert samples[-1]["memoryBytes"] == 199


def test_rounds_between_steps_are_skipped():
    h = UsageHistory(window=3600, step=30)
    for t, rss in ((0.0, 1), (5.0, 2), (25.0, 3), (30.0, 4), (35.0, 5), (60.0, 6)):
        h.record(t, {"a": (rss, 0.5)})
    assert [s["memoryBytes"] for s in h.series("a")] == [1, 4, 6]


def test_a_stopped_bot_keeps_its_history_and_a_deleted_one_loses_it():
    h = UsageHistory(window=100, step=10)
    h.record(0.0, {"a": (1, 0.0), "b": (5, 2.0)})
    h.record(10.0, {"a": None, "b": (6, 2.0)})  # a stopped
    assert [s["memoryBytes"] for s in h.series("a")] == [1]
    h.record(200.0, {"a": None, "b": (7, 2.0)})  # a's samples aged out
    assert h.series("a") == []
    assert [s["memoryBytes"] for s in h.series("b")] == [7]
    h.record(210.0, {"a": None})  # b deleted
    assert h.series("b") == []
    assert h.series("never") == []
