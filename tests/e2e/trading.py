"""What the end-to-end suites assert of trading bots, read through the proxy as a user would.

Bots are real `freqtrade trade --dry-run` processes with the DemoStrategy, trading against
the exchange emulator (tests/exchange) through ccxt's URL overrides.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from tests.exchange import DEMO_STRATEGY, EmulatorProcess, pairs
from tests.support import wait_for

# Fewer markets and pairs than the benchmarks (2,000 and 20): the suites test behaviour.
SUITE_MARKETS = 400
SUITE_PAIRS = 3
STRATEGY = DEMO_STRATEGY


def start_exchange(host: str = "127.0.0.1") -> EmulatorProcess:
    return EmulatorProcess.start(host, markets=SUITE_MARKETS)


async def trades(client: Any, token: str, bot: str) -> dict[int, dict[str, Any]]:
    """A bot's trades through the proxy, by trade id: the open ones (FreqTrade's `/status`)
    and the closed ones (its `/trades`, which lists only those)."""
    status, open_trades = await client.call("GET", f"/api/bots/{bot}/status", token)
    assert status == 200, open_trades
    status, closed = await client.call("GET", f"/api/bots/{bot}/trades?limit=500", token)
    assert status == 200, closed
    return {t["trade_id"]: t for t in [*closed["trades"], *open_trades]}


async def wait_trading(
    client: Any, token: str, bots: list[str], timeout: float = 240
) -> dict[str, dict[int, dict[str, Any]]]:
    """Wait until every bot has a trade open; return each bot's trades."""
    found: dict[str, dict[int, dict[str, Any]]] = {}
    last: dict[str, Any] = {}

    async def all_traded() -> bool:
        for bot in bots:
            if not found.get(bot):
                status, body = await client.call("GET", f"/api/bots/{bot}/status", token)
                last[bot] = (status, body)
                if status == 200 and body:
                    found[bot] = {t["trade_id"]: t for t in body}
        return all(found.get(b) for b in bots)

    try:
        await wait_for(all_traded, timeout, step=1)
    except AssertionError:
        waiting = {b: last.get(b) for b in bots if not found.get(b)}
        raise AssertionError(f"no trade within {timeout}s: last answers {waiting}") from None
    return {bot: await trades(client, token, bot) for bot in bots}


def now() -> datetime:
    return datetime.now(UTC)


def _closed_at(trade: dict[str, Any]) -> datetime | None:
    stamp = trade.get("close_timestamp")
    return datetime.fromtimestamp(stamp / 1000, UTC) if stamp else None


def assert_trades_kept(
    before: dict[int, dict[str, Any]], after: dict[int, dict[str, Any]], event: datetime
) -> None:
    """Every trade from before an event is still there, unchanged by it, and none twice.

    An open trade may have closed since, but only after the event (by the strategy, in
    the bot that came back); a closed one is closed as it was; no pair has two open trades.
    """
    for trade_id, old in before.items():
        assert trade_id in after, f"trade {trade_id} ({old['pair']}) was lost"
        new = after[trade_id]
        assert (new["pair"], new["open_timestamp"]) == (old["pair"], old["open_timestamp"])
        if not old["is_open"]:
            assert not new["is_open"] and new["close_timestamp"] == old["close_timestamp"]
        elif not new["is_open"]:
            closed = _closed_at(new)
            assert closed is not None and closed >= event.replace(microsecond=0), (
                f"trade {trade_id} closed at {closed}, before the event at {event}"
            )
    opened = [(t["pair"], t["open_timestamp"]) for t in after.values()]
    assert len(opened) == len(set(opened)), "a trade was duplicated"
    open_pairs = [t["pair"] for t in after.values() if t["is_open"]]
    assert len(open_pairs) == len(set(open_pairs)), "two open trades on one pair"


async def assert_trading_api(client: Any, token: str, bot: str) -> None:
    """FreqTrade's trading endpoints answer with real content through the proxy."""
    status, open_trades = await client.call("GET", f"/api/bots/{bot}/status", token)
    assert status == 200 and isinstance(open_trades, list), open_trades
    for trade in open_trades:
        assert trade["is_open"] and trade["pair"] in pairs(SUITE_PAIRS)
    status, profit = await client.call("GET", f"/api/bots/{bot}/profit", token)
    assert status == 200 and profit["trade_count"] >= 1, profit
    status, balance = await client.call("GET", f"/api/bots/{bot}/balance", token)
    assert status == 200 and balance["stake"] == "USDT", balance
    assert any(c["currency"] == "USDT" for c in balance["currencies"])


# The suites run pools as the product does by default: with their market-data proxy.
MARKET_DATA = {"MARKET_DATA_PROXY": "true", "MARKET_DATA_BASE_PORT": "8600"}


async def assert_market_data_proxied(client: Any, pools: list[str]) -> None:
    """Each pool's market-data proxy runs and carried its bots' public requests upstream
    (the emulator's per-bot prefixes keep each bot's URLs apart, so the suites see routing;
    the integration test sees bots share)."""
    status, body = await client.call("GET", "/api/pool/status")
    assert status == 200
    found = {p["id"]: p.get("marketData") for p in body["pools"]}
    for pool in pools:
        market = found[pool]
        assert market is not None and market["state"] == "RUNNING", (pool, market)
        binance = market["exchanges"]["binance"]
        assert binance["requests"] > 0 and binance["upstreamRequests"] > 0, (pool, binance)
        assert binance["errors"] == 0 and binance["refused"] == 0, (pool, binance)
