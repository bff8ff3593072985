"""A bot's config as the agent writes it: ccxt's URLs through the proxy, nothing else changed."""

from __future__ import annotations

import json

from agent.marketdata.address import target
from agent.marketdata.routing import config_files, route_config, route_file
from agent.marketdata.table import load_tables
from tests.exchange import exchange_config, pairs

TABLES = load_tables()
PORT = 24900
PROXY = f"http://127.0.0.1:{PORT}"


def upstream_of(url: str) -> str:
    assert url.startswith(PROXY + "/e/binance/"), url
    return target(url.removeprefix(PROXY)).url


def test_the_public_url_goes_through_the_proxy_to_binance():
    config = {"exchange": {"name": "binance", "key": "k", "secret": "s"}, "dry_run": True}
    routed = route_config(config, PORT, TABLES)
    urls = routed["exchange"]["ccxt_config"]["urls"]["api"]
    # Only the public key: ccxt's defaults stay for the others (orders, balances, wallet).
    assert {k: upstream_of(v) for k, v in urls.items()} == {
        "public": "https://api.binance.com/api/v3"
    }
    # Nothing else changes, and the input is left alone.
    assert routed["exchange"]["key"] == "k" and routed["dry_run"] is True
    assert "ccxt_config" not in config["exchange"]


def test_the_users_own_urls_become_the_upstreams():
    config = exchange_config("http://127.0.0.1:8700", pairs(3), client="bot-1")
    routed = route_config(config, PORT, TABLES)
    sync = routed["exchange"]["ccxt_config"]["urls"]["api"]
    asynchronous = routed["exchange"]["ccxt_async_config"]["urls"]["api"]
    for urls in (sync, asynchronous):
        assert upstream_of(urls["public"]) == "http://127.0.0.1:8700/c/bot-1/api/v3"
    # Every other key (private ones, ccxt.pro's websockets) is left as the user set it.
    for section, urls in (("ccxt_config", sync), ("ccxt_async_config", asynchronous)):
        original = config["exchange"][section]["urls"]["api"]
        assert {k: v for k, v in urls.items() if k != "public"} == {
            k: v for k, v in original.items() if k != "public"
        }
    assert sync["private"] == "http://127.0.0.1:8700/c/bot-1/api/v3"
    assert (
        routed["exchange"]["ccxt_async_config"]["options"]
        == config["exchange"]["ccxt_async_config"]["options"]
    )


def test_urls_that_cannot_be_routed_stay():
    for public in ("https://user:pw@api.binance.com/api/v3", "ftp://x", 42):
        config = {"exchange": {"name": "Binance", "ccxt_config": {"urls": {"api": {
            "public": public}}}}}  # fmt: skip
        urls = route_config(config, PORT, TABLES)["exchange"]["ccxt_config"]["urls"]["api"]
        assert urls == {"public": public}


def test_exchanges_without_a_table_and_odd_configs_are_untouched():
    assert route_config({"exchange": {"name": "kraken"}}, PORT, TABLES) is None
    assert route_config({"exchange": "binance"}, PORT, TABLES) is None
    assert route_config({}, PORT, TABLES) is None
    odd = {"exchange": {"name": "binance", "ccxt_config": {"urls": {"api": "https://x"}}}}
    assert route_config(odd, PORT, TABLES) is None


def test_routing_a_file_is_stable_and_leaves_other_files_alone():
    content = json.dumps({"exchange": {"name": "binance"}}).encode()
    once = route_file(content, PORT, TABLES)
    assert once != content
    assert route_file(content, PORT, TABLES) == once
    assert route_file(once, PORT, TABLES) == once  # already routed: unchanged
    assert route_file(b"not json", PORT, TABLES) == b"not json"
    assert route_file(b"[1]", PORT, TABLES) == b"[1]"
    kraken = json.dumps({"exchange": {"name": "kraken"}}).encode()
    assert route_file(kraken, PORT, TABLES) == kraken


def test_config_files_of_a_command():
    assert config_files(["freqtrade", "trade", "--config", "config.json"]) == ["config.json"]
    assert config_files(["ft", "-c", "a.json", "--config=b.json", "-c"]) == ["a.json", "b.json"]
