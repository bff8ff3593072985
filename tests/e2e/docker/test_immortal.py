"""Immortal preloaded objects (PRELOAD_IMMORTAL) in a real pool container on the pool image's
Python: the preloader makes its objects immortal before it forks, a forked trading bot finds
the preloaded ones immortal and its own ones not, and it trades as any bot does. With the
setting off, the same bot's preloaded objects are counted as usual.
"""

from __future__ import annotations

import asyncio
import json
import shutil
from pathlib import Path

import docker
import pytest

from tests.e2e.docker.conftest import cluster_in_docker
from tests.e2e.local.test_freqtrade import ALICE, all_running
from tests.e2e.trading import assert_trading_api, wait_trading
from tests.exchange import trading_bot
from tests.support import wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="module")]
STRATEGIES = Path(__file__).resolve().parents[3] / "controller" / "strategies"
IMMORTAL = 0xFFFFFFFF  # sys.getrefcount of an immortal object on CPython 3.12 and 3.13
# What a forked bot sees, written by its strategy where the test can read it: preloaded
# objects (a FreqTrade function, pandas' DataFrame class, a ccxt exchange class) and one
# of its own.
PROBE = """
    def bot_start(self, **kwargs) -> None:
        import gc
        import json
        import sys

        import ccxt
        import freqtrade.main
        import pandas

        seen = {
            "freqtrade.main.main": sys.getrefcount(freqtrade.main.main),
            "pandas.DataFrame": sys.getrefcount(pandas.DataFrame),
            "ccxt.binance": sys.getrefcount(ccxt.binance),
            "own": sys.getrefcount(type("Own", (), {})),
            "frozen": gc.get_freeze_count(),
            "python": list(sys.version_info[:2]),
        }
        path = self.config["user_data_dir"] / "refcounts.json"
        path.write_text(json.dumps(seen))
"""
PRELOADED = ("freqtrade.main.main", "pandas.DataFrame", "ccxt.binance")


def probe_strategies(directory: Path) -> Path:
    shutil.copy(STRATEGIES / "DemoStrategy.py", directory)
    demo = (STRATEGIES / "DemoStrategy.py").read_text()
    (directory / "ProbeStrategy.py").write_text(
        demo.replace("class DemoStrategy(", "class ProbeStrategy(") + PROBE
    )
    return directory


def read_in_pool(client: docker.DockerClient, path: str) -> str | None:
    result = client.containers.get("freqtrade-pool-pool-1").exec_run(["cat", path])
    return result.output.decode(errors="replace") if result.exit_code == 0 else None


async def run_probe(tmp_path_factory, client, exchange, setting: str) -> tuple[dict, str]:
    """A pool with PRELOAD_IMMORTAL=setting, a probing bot that trades: what the bot saw,
    and the preloader's log."""
    strategies = probe_strategies(tmp_path_factory.mktemp("strategies"))
    async with cluster_in_docker(
        tmp_path_factory, client, PRELOAD_IMMORTAL=setting, STRATEGIES_DIR=str(strategies),
        POOL_BASE_PORT="31210", MARKET_DATA_BASE_PORT="31200",
    ) as cluster:  # fmt: skip
        h = cluster.harness
        await h.provision(
            ALICE, **{**trading_bot(exchange.url, "probe"), "strategy": "ProbeStrategy"}
        )
        await all_running(cluster, ["probe"], timeout=240)
        path = "/pool/bots/probe/user_data/refcounts.json"
        seen = json.loads(
            await wait_for(lambda: asyncio.to_thread(read_in_pool, client, path), 120, step=1)
        )
        await wait_trading(h, ALICE, ["probe"])
        await assert_trading_api(h, ALICE, "probe")
        log = await asyncio.to_thread(read_in_pool, client, "/var/log/supervisor/preloader.log")
        return seen, log or ""


async def test_a_forked_bot_finds_preloaded_objects_immortal_and_trades(
    tmp_path_factory: pytest.TempPathFactory, docker_client: docker.DockerClient, exchange
):
    seen, log = await run_probe(tmp_path_factory, docker_client, exchange, "auto")
    print("immortal on:", seen)
    assert seen["python"] == [3, 13]
    assert {name: seen[name] for name in PRELOADED} == dict.fromkeys(PRELOADED, IMMORTAL)
    assert seen["own"] < 100  # made after the fork: counted as usual
    assert seen["frozen"] > 0  # and the collector still keeps away from the preloaded ones
    assert "objects made immortal in" in log, log[-2000:]


async def test_with_the_setting_off_preloaded_objects_are_counted_as_usual(
    tmp_path_factory: pytest.TempPathFactory, docker_client: docker.DockerClient, exchange
):
    seen, log = await run_probe(tmp_path_factory, docker_client, exchange, "off")
    print("immortal off:", seen)
    assert all(seen[name] < IMMORTAL for name in PRELOADED), seen
    assert seen["frozen"] > 0
    assert "immortal objects off (PRELOAD_IMMORTAL=off)" in log, log[-2000:]
