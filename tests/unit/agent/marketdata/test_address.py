"""The proxy's URL scheme: the upstream travels in the path, checked on the way in and out."""

from __future__ import annotations

import pytest

from agent.marketdata.address import BadUpstream, check_upstream, proxy_base, target


def test_a_routed_url_leads_back_to_the_upstream_byte_for_byte():
    base = proxy_base(24900, "binance", "http://127.0.0.1:8700/c/pool/api/v3")
    assert base.startswith("http://127.0.0.1:24900/e/binance/")
    query = "symbol=BTCUSDT&timestamp=1&recvWindow=5000&signature=a%2Fb"
    found = target(base.removeprefix("http://127.0.0.1:24900") + "/account?" + query)
    assert found.exchange == "binance"
    assert found.origin == "http://127.0.0.1:8700"
    assert found.url == "http://127.0.0.1:8700/c/pool/api/v3/account?" + query
    assert found.path == "/c/pool/api/v3/account"
    assert found.query == query


def test_the_base_alone_is_the_upstream_base():
    base = proxy_base(1, "binance", "https://api.binance.com/api/v3")
    assert target(base.removeprefix("http://127.0.0.1:1")).url == "https://api.binance.com/api/v3"


@pytest.mark.parametrize(
    "upstream",
    [
        "ftp://api.binance.com/api",
        "https://user:pw@api.binance.com/api/v3",
        "https://api.binance.com/api/v3?x=1",
        "https://api.binance.com/api/v3#frag",
        "https:///nohost",
        "https://api.binance.com/a b",
        "https://api.binance.com/" + "a" * 600,
        "",
    ],
)
def test_upstreams_that_are_refused(upstream):
    with pytest.raises(BadUpstream):
        check_upstream(upstream)


@pytest.mark.parametrize(
    "raw_path",
    [
        "/",
        "/api/v3/klines",
        "/e/Binance/aHR0cHM6Ly9hcGkuYmluYW5jZS5jb20/klines",
        "/e/binance/not*base64/klines",
        "/e/binance/Zm9vOi8vYmFy/klines",  # foo://bar
        "/e/binance/" + "QUFB" * 200 + "/klines",
    ],
)
def test_paths_that_are_refused(raw_path):
    with pytest.raises(BadUpstream):
        target(raw_path)
