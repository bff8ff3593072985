"""The market list and exchangeInfo's symbol entries."""

import re

from tests.exchange.exchange_info import ExchangeInfo, symbol_info
from tests.exchange.markets import MAJORS, build_markets, pairs

FILTERS = {
    "PRICE_FILTER",
    "LOT_SIZE",
    "ICEBERG_PARTS",
    "MARKET_LOT_SIZE",
    "TRAILING_DELTA",
    "PERCENT_PRICE_BY_SIDE",
    "NOTIONAL",
    "MAX_NUM_ORDERS",
    "MAX_NUM_ALGO_ORDERS",
}


def test_two_thousand_markets_like_binance_spot():
    markets = build_markets(2000).markets
    assert len(markets) == 2000
    assert len({m.symbol for m in markets}) == 2000
    assert [m.pair for m in markets[:3]] == ["BTC/USDT", "ETH/USDT", "BNB/USDT"]
    assert len(MAJORS) >= 20
    assert {m.quote for m in markets} >= {"USDT", "BTC", "ETH", "BNB", "FDUSD", "EUR", "TRY"}
    for m in markets:
        assert m.symbol == m.base + m.quote
        assert re.fullmatch(r"[A-Z]{2,6}", m.base) and re.fullmatch(r"[A-Z]{3,5}", m.quote)
        assert m.price / m.tick >= 999  # at least ~1,000 ticks: prices stay meaningful


def test_a_shorter_list_is_a_prefix_of_a_longer_one():
    short, long = build_markets(150).markets, build_markets(2000).markets
    assert [m.symbol for m in short] == [m.symbol for m in long[:150]]


def test_pairs_are_valid_usdt_pairs_majors_first():
    chosen = pairs(40)
    assert chosen[:5] == ["BTC/USDT", "ETH/USDT", "BNB/USDT", "SOL/USDT", "XRP/USDT"]
    assert len(set(chosen)) == 40 and all(p.endswith("/USDT") for p in chosen)
    listed = {m.pair for m in build_markets(2000).markets}
    assert set(chosen) <= listed
    assert "FDUSD/USDT" not in pairs(300)  # no stablecoin: it would not move
    assert pairs(5, markets=10) == chosen[:5]


def test_symbol_entries_carry_binance_filters():
    for m in build_markets(2000).markets[::50]:
        info = symbol_info(m)
        assert info["status"] == "TRADING" and info["isSpotTradingAllowed"] is True
        assert info["baseAssetPrecision"] == 8 and info["quotePrecision"] == 8
        assert "LIMIT" in info["orderTypes"] and "MARKET" in info["orderTypes"]
        assert info["permissionSets"][0][:1] == ["SPOT"]
        by_type = {f["filterType"]: f for f in info["filters"]}
        assert set(by_type) == FILTERS
        price, lot = by_type["PRICE_FILTER"], by_type["LOT_SIZE"]
        assert float(price["tickSize"]) == m.tick and float(price["minPrice"]) == m.tick
        assert float(lot["stepSize"]) == m.step and float(lot["maxQty"]) >= 9000
        assert float(by_type["NOTIONAL"]["minNotional"]) == m.min_notional


def test_exchange_info_is_serialized_once_with_the_server_time():
    info = ExchangeInfo(build_markets(20).markets, 6000)
    first, second = info.all_bytes(1), info.all_bytes(22)
    assert first.startswith(b'{"timezone":"UTC","serverTime":1,"rateLimits":[')
    assert first.replace(b'"serverTime":1,', b'"serverTime":22,') == second
