"""bench/neighbours/figures.py: samples split by phase, percentiles in ms, runs side by side."""

from __future__ import annotations

import math

from bench.neighbours.figures import Phase, stats, summarise, table

PHASES = [Phase("quiet", 0, 10), Phase("after", 10, 20)]


def test_stats_are_milliseconds_of_the_answered_requests_and_count_the_failed() -> None:
    s = stats([0.001 * i for i in range(1, 101)] + [None, None])
    assert (s.count, s.failed) == (102, 2)
    assert (round(s.p50, 6), round(s.p99, 6), round(s.max, 6)) == (50, 99, 100)
    empty = stats([None])
    assert empty.failed == 1 and math.isnan(empty.p50) and math.isnan(empty.max)


def test_each_sample_counts_in_the_phase_it_was_due_in() -> None:
    series = {"ping": [(0, 0.002), (9.99, 0.004), (10, 0.5), (19, None), (20, 9.0)],
              "status": [(5, 0.01)]}  # fmt: skip
    summary = summarise(PHASES, series)
    assert summary["quiet"]["ping"].count == 2 and summary["quiet"]["ping"].max == 4
    assert (summary["after"]["ping"].count, summary["after"]["ping"].failed) == (2, 1)
    assert summary["after"]["ping"].max == 500  # the one at 20 s is past the run
    assert summary["after"]["status"].count == 0


def test_the_table_has_a_row_per_phase_and_limits_in_phase_order() -> None:
    series = {name: [(1, 0.001), (11, 0.002), (12, None)] for name in ("ping", "status", "agent")}
    runs = {"off": summarise(PHASES, series), "on": summarise(PHASES, series)}
    lines = table(runs)
    assert [line.split()[:2] for line in lines[2:]] == [
        ["quiet", "off"], ["quiet", "on"], ["after", "off"], ["after", "on"],
    ]  # fmt: skip
    assert lines[4].split()[2:] == ["2.0", "2.0", "2.0"] * 3 + ["3"]  # 3 failed in all
    assert len({len(line) for line in lines[2:]}) == 1  # columns line up
