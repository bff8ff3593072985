"""Bots moved off a market-data proxy port that another process took: pure decisions.

A pool's agent routes a bot through the pool's market-data proxy only while the proxy
holds its loopback port (agent/marketdata/holder.py). A bot reads its config when it
starts, so when a stranger takes the port (the proxy crashed, and something else bound the
port before supervisord started it again), the bots already running through it would send
their public market-data requests to the stranger and trade on its answers. The agent
reports which running bots started through the proxy (`routed`); each of them that should
run is restarted once, through its nonce, and starts with its exchange's own URL (the
agent writes configs direct while a stranger holds the port).

All of the pool's routed bots are asked at once: every second one of them stays with the
stranger it may trade on false prices. The agent carries the restarts out one after
another as it converges (each bot stopped and waited for before it starts: never two
copies), so the pool is never down as a whole. The restart policy does not count these
(the bot did not fail; its restart record is kept as it is), and each is the event
`bot_restart` with the reason `market_data_port_taken`.

When the proxy has its port back, moved bots are not restarted again: the direct route
works, and a restart costs a bot its loop; they return to the proxy at their next start.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass

from common.states import RunState
from controller.records import BotRecord

PORT_TAKEN = "market_data_port_taken"
STRANGER = "stranger"


@dataclass(frozen=True, slots=True)
class Rerouting:
    restart: tuple[str, ...] = ()  # bots to restart now
    # Bots asked already while the port is taken: not asked twice (the agent reports them
    # routed until it restarts them). Forgotten once the port is no longer a stranger's.
    asked: frozenset[str] = frozenset()


NOTHING = Rerouting()


def reroute(
    holder: str | None, routed: Collection[str] | None, bots: Mapping[str, BotRecord],
    asked: frozenset[str], pool_id: str,
) -> Rerouting:  # fmt: skip
    """Which of a pool's bots to restart off its proxy's port, from who holds the port and
    which running bots the agent says started through the proxy."""
    if holder != STRANGER:
        return NOTHING
    restart = tuple(
        bot_id for bot_id in sorted(routed or ())
        if bot_id not in asked and should_run_in(bots.get(bot_id), pool_id)
    )  # fmt: skip
    return Rerouting(restart, asked | frozenset(restart)) if restart else Rerouting((), asked)


def should_run_in(bot: BotRecord | None, pool_id: str) -> bool:
    """A bot of this pool that its user wants running, and that nobody else is handling
    (a move holds it, a deletion removes it)."""
    return (
        bot is not None and bot.pool_id == pool_id and bot.run == RunState.RUNNING
        and not bot.held and not bot.deleting
    )  # fmt: skip
