"""The per-exchange tables: the shipped ones load, broken ones are refused, weights follow them."""

from __future__ import annotations

import json

import pytest

from agent.marketdata.table import TABLES_DIR, TableError, load_tables, parse_table

RISING_NOT = {"by": "limit", "default": 1, "steps": [[9, 1], [5, 2]]}
BINANCE = json.loads((TABLES_DIR / "binance.json").read_text())


def test_shipped_tables_load():
    tables = load_tables()
    binance = tables["binance"]
    assert binance.urls["public"] == "https://api.binance.com/api/v3"
    assert {e.path.rsplit("/", 1)[1] for e in binance.endpoints} >= {
        "ping", "time", "exchangeInfo", "klines", "depth", "24hr", "price", "bookTicker",
    }  # fmt: skip
    assert binance.budget.weight_limit == 6000
    assert binance.budget.used_weight_header == "X-MBX-USED-WEIGHT-1M"


def test_endpoints_match_behind_a_prefix_and_not_beside():
    binance = load_tables()["binance"]
    assert binance.endpoint("/api/v3/klines").cache == "candles"
    assert binance.endpoint("/c/bot-1/api/v3/klines").cache == "candles"
    assert binance.endpoint("/api/v3/account") is None
    assert binance.endpoint("/api/v3/klines/extra") is None


def test_private_markers():
    binance = load_tables()["binance"]
    assert binance.is_private({"signature": "ab"}, {})
    assert binance.is_private({}, {"X-MBX-APIKEY": "k"})
    assert not binance.is_private({"symbol": "BTCUSDT"}, {"User-Agent": "ccxt"})


@pytest.mark.parametrize(
    ("path", "query", "weight"),
    [
        ("/api/v3/depth", {"symbol": "BTCUSDT"}, 5),
        ("/api/v3/depth", {"symbol": "BTCUSDT", "limit": "500"}, 25),
        ("/api/v3/depth", {"symbol": "BTCUSDT", "limit": "5000"}, 250),
        ("/api/v3/depth", {"symbol": "BTCUSDT", "limit": "junk"}, 5),
        ("/api/v3/ticker/24hr", {"symbol": "BTCUSDT"}, 2),
        ("/api/v3/ticker/24hr", {"symbols": json.dumps(["A"] * 50)}, 40),
        ("/api/v3/ticker/24hr", {"symbols": json.dumps(["A"] * 101)}, 80),
        ("/api/v3/ticker/24hr", {}, 80),
        ("/api/v3/ticker/price", {"symbol": "BTCUSDT"}, 2),
        ("/api/v3/ticker/price", {}, 4),
        ("/api/v3/exchangeInfo", {}, 20),
        ("/api/v3/klines", {"symbol": "BTCUSDT", "interval": "1m"}, 2),
    ],
)
def test_weights_are_binances(path, query, weight):
    assert load_tables()["binance"].endpoint(path).weight.of(query) == weight


@pytest.mark.parametrize(
    ("change", "complaint"),
    [
        ({"exchange": "Bin/ance"}, "ccxt id"),
        ({"urls": {"public": "ftp://x"}}, "http(s)"),
        ({"budget": {**BINANCE["budget"], "public_share": 1.5}}, "public_share"),
        ({"endpoints": {"/api/v3/klines": {"cache": "forever", "weight": 1}}}, "cache must be"),
        ({"endpoints": {"/api/v3/x": {"cache": "fixed", "weight": 1}}}, "ttl_ms"),
        ({"endpoints": {"/api/v3/x": {"cache": "live", "weight": -1}}}, "weight is"),
        ({"endpoints": {"/api/v3/x": {"cache": "live", "weight": 1, "ttl": 5}}}, "unknown"),
        ({"endpoints": {"/x/../y": {"cache": "live", "weight": 1}}}, "a path"),
        ({"endpoints": {"/d": {"cache": "quote", "weight": RISING_NOT}}}, "rise"),
    ],
)
def test_broken_tables_are_refused(change, complaint):
    with pytest.raises(TableError, match=complaint.replace("(", r"\(").replace(")", r"\)")):
        parse_table({**BINANCE, **change}, "test.json")


def test_a_table_must_be_named_after_its_exchange(tmp_path):
    (tmp_path / "kraken.json").write_text(json.dumps(BINANCE))
    with pytest.raises(TableError, match="names exchange"):
        load_tables(tmp_path)
