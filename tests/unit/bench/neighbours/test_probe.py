"""bench/neighbours/probe.py: every calm bot and endpoint in turn, samples decoded."""

from __future__ import annotations

from array import array

from bench.neighbours.probe import ProbePlan, Sample, decode

PLAN = ProbePlan("http://127.0.0.1:1", ("a", "b", "c"), "token", rate=10)


def test_requests_go_to_every_bot_and_endpoint_in_turn() -> None:
    targets = [PLAN.target(n) for n in range(7)]
    assert targets == [(0, 0), (0, 1), (1, 0), (1, 1), (2, 0), (2, 1), (0, 0)]


def test_samples_are_decoded_with_their_bot_endpoint_and_failures() -> None:
    raw = (array("d", [1.0, 1.1, 1.2]).tobytes(), array("i", [0, 3, 4]).tobytes(),
           array("d", [0.01, -1.0, 0.03]).tobytes())  # fmt: skip
    assert decode(PLAN, raw) == [
        Sample(1.0, "a", "ping", 0.01), Sample(1.1, "b", "status", None),
        Sample(1.2, "c", "ping", 0.03),
    ]  # fmt: skip
