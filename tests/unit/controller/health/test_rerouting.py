"""Which bots are restarted off a market-data proxy port a stranger took: pure decisions."""

from __future__ import annotations

from dataclasses import replace

from common.states import RunState
from controller.health.rerouting import NOTHING, Rerouting, reroute
from controller.records import BotRecord, BotSecrets

B1 = BotRecord(id="b1", user_id="alice", pool_id="pool-1", slot=0, port=9000, strategy="S",
               strategy_source=b"", config={}, secrets=BotSecrets("u", "p", "j", "w"))  # fmt: skip
BOTS = {b: replace(B1, id=b, port=9000 + n) for n, b in enumerate(["b1", "b2", "b3"])}


def test_the_routed_bots_are_restarted_once_while_a_stranger_holds_the_port() -> None:
    first = reroute("stranger", ["b2", "b1"], BOTS, frozenset(), "pool-1")
    assert first == Rerouting(("b1", "b2"), frozenset({"b1", "b2"}))  # b3 started direct
    # The agent still says so until it has restarted them: they are not asked twice.
    again = reroute("stranger", ["b1", "b2"], BOTS, first.asked, "pool-1")
    assert again == Rerouting((), first.asked)
    # One started through the proxy meanwhile (before the agent saw the stranger) is.
    later = reroute("stranger", ["b3"], BOTS, first.asked, "pool-1")
    assert later == Rerouting(("b3",), frozenset({"b1", "b2", "b3"}))


def test_nothing_is_restarted_while_the_proxy_or_nobody_holds_its_port() -> None:
    for holder in ("proxy", "none", None):
        assert reroute(holder, ["b1"], BOTS, frozenset({"b1"}), "pool-1") is NOTHING
    # An agent from before `routed` says nothing about its bots: none is restarted.
    assert reroute("stranger", None, BOTS, frozenset(), "pool-1") == Rerouting()


def test_only_bots_that_should_run_in_that_pool_are_restarted() -> None:
    bots = {
        "stopped": replace(B1, id="stopped", run=RunState.STOPPED),
        "moving": replace(B1, id="moving", held=True),
        "deleting": replace(B1, id="deleting", deleting=True),
        "elsewhere": replace(B1, id="elsewhere", pool_id="pool-2"),
        "b1": B1,
    }
    routed = [*bots, "unknown"]
    assert reroute("stranger", routed, bots, frozenset(), "pool-1").restart == ("b1",)
