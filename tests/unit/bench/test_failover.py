"""bench/failover.py: its cases, how they are grouped into swarms, and its figures."""

from __future__ import annotations

import pytest

from bench.failover import Case, Figures, Marks, plan, recovery_points, watch


def test_cases_are_named_by_kind_fence_and_heartbeat() -> None:
    assert Case.parse("swarm-5s") == Case("swarm-5s", 5.0, plain=True)
    assert Case.parse("ftpool-tuned-1s") == Case("ftpool-tuned-1s", 1.0, (10, 10))
    assert Case.parse("ftpool-default-5s") == Case("ftpool-default-5s", 5.0, None)
    for wrong in ("swarm", "swarm-2s", "ftpool-5s", "ftpool-fast-1s", "k8s-1s", ""):
        with pytest.raises(ValueError, match="unknown case"):
            Case.parse(wrong)


def test_one_swarm_per_heartbeat_in_the_order_first_named() -> None:
    groups = plan(["ftpool-tuned-1s", "swarm-5s", "swarm-1s", "ftpool-default-5s"])
    assert [(hb, [c.name for c in cases]) for hb, cases in groups] == [
        (1.0, ["ftpool-tuned-1s", "swarm-1s"]),
        (5.0, ["swarm-5s", "ftpool-default-5s"]),
    ]


def test_marks_keep_the_first_time_each_condition_was_seen() -> None:
    marks = Marks(start=100.0)
    marks.see("fenced", False, 101.0)
    marks.see("fenced", True, 111.74)
    marks.see("fenced", True, 115.0)  # still true later: the first time stays
    marks.see("node 2 down", True, 103.26)
    assert marks.first == {"fenced": 11.7, "node 2 down": 3.3}


async def test_watch_samples_until_every_check_was_true_and_gives_up_in_time() -> None:
    calls = {"soon": 0, "later": 0}

    def after(name: str, n: int):  # type: ignore[no-untyped-def]
        def check() -> bool:
            calls[name] += 1
            return calls[name] >= n

        return check

    marks = Marks(start=0.0)
    await watch(marks, {"soon": after("soon", 1), "later": after("later", 3)}, timeout=10)
    assert set(marks.first) == {"soon", "later"}
    assert calls == {"soon": 1, "later": 3}  # a check seen true is not sampled again
    with pytest.raises(AssertionError, match="never"):
        await watch(Marks(start=0.0), {"never": lambda: False}, timeout=0.1)


def test_recovery_points_come_from_the_failover_events() -> None:
    events = [
        {"instanceId": "b2", "detail": {"ageSeconds": 4.2, "lostSeconds": 0, "fromPool": "p"}},
        {"instanceId": "b1", "detail": {"ageSeconds": 3.1, "lostSeconds": 1.5}},
    ]
    assert recovery_points(events) == {"b1": (3.1, 1.5), "b2": (4.2, 0)}
    assert list(recovery_points(events)) == ["b1", "b2"]


def test_a_line_of_figures_names_the_case_its_rule_and_every_figure() -> None:
    plain = Figures(Case.parse("swarm-1s"), {"answering on node 1": 8.54},
                    {"node 2's copy stopped": 18.0}, copies=2)  # fmt: skip
    assert plain.line() == (
        "swarm-1s (heartbeat 1 s, no fencing): after the cut answering on node 1 8.5 s; "
        "after the mend node 2's copy stopped 18.0 s; most copies at once 2"
    )
    ftpool = Figures(Case.parse("ftpool-default-5s"), {"fenced": 31.0}, {},
                     {"b1": (2.0, 0)}, copies=1)  # fmt: skip
    assert ftpool.line() == (
        "ftpool-default-5s (heartbeat 5 s, fence 30 s + 60 s): after the cut fenced 31.0 s; "
        "recovery points: b1 age 2.0 s lost 0 s; most copies at once 1"
    )
