"""PRELOAD_MARKETS from the controller's settings to each pool's preloader command line."""

from __future__ import annotations

import base64
import json
import shlex
from pathlib import Path

import pytest

from agent.programs import ProgramOptions, PythonCommand, render_preloader
from common.settings import AgentSettings, ControllerSettings, SettingsError
from tests.unit.agent.test_programs import load_like_supervisord
from tests.unit.controller.apps import ALICE, ApiFactory

# A ccxt config with what INI files and environments trip over: quotes, %, # after a space.
MARKETS = [{"exchange": "binance", "ccxt_config": {
    "urls": {"api": {"public": "http://127.0.0.1:9/api/v3"}},
    "options": {"fetchMarkets": {"types": ["spot"]}, "note": "100% \"spot\" #1 ;x"},
}}]  # fmt: skip


def test_the_setting_is_a_checked_json_list_of_exchanges() -> None:
    settings = ControllerSettings.from_env({"PRELOAD_MARKETS": json.dumps(MARKETS, indent=2)})
    assert json.loads(settings.preload_markets) == MARKETS
    assert ControllerSettings.from_env({}).preload_markets == ""  # off by default


@pytest.mark.parametrize(
    "value",
    [
        "binance", "{}", "[]", '[{"exchange": "Binance"}]', '[{"exchange": "../x"}]',
        '[{"exchange": "binance", "ccxt_config": []}]', '[{"exchange": "binance", "x": 1}]',
        json.dumps([{"exchange": "binance"}] * 9), "base64:!!",
    ],
)  # fmt: skip
def test_a_malformed_value_is_refused_by_name(value: str) -> None:
    with pytest.raises(SettingsError, match="PRELOAD_MARKETS"):
        ControllerSettings.from_env({"PRELOAD_MARKETS": value})


@pytest.mark.parametrize("key", ["apiKey", "secret", "password", "privateKey", "headers"])
def test_credentials_are_refused_and_never_said(key: str) -> None:
    value = json.dumps([{"exchange": "binance", "ccxt_config": {key: "s3cr3t-value"}}])
    with pytest.raises(SettingsError, match=f"PRELOAD_MARKETS.*public.*{key}") as raised:
        ControllerSettings.from_env({"PRELOAD_MARKETS": value})
    assert "s3cr3t-value" not in str(raised.value)


async def test_each_pool_agent_gets_it_and_its_preloader_runs_with_it(
    make_api: ApiFactory, tmp_path: Path
) -> None:
    api = await make_api(PRELOAD_MARKETS=json.dumps(MARKETS))
    await api.provision(ALICE, instanceId="b1")
    env = api.runtime.launches["pool-1"].agent_env
    agent = AgentSettings.from_env({
        "POOL_ID": "pool-1", "POOL_TOKEN": "t", "PRELOAD_MARKETS": env["PRELOAD_MARKETS"],
    })  # fmt: skip
    assert json.loads(agent.preload_markets) == MARKETS
    (tmp_path / "logs").mkdir()
    opts = ProgramOptions(
        log_dir=tmp_path / "logs", run_dir=tmp_path / "run", preload_markets=agent.preload_markets
    )
    preload = PythonCommand("/usr/bin/python3", "/bin/freqtrade", [])
    _name, (process,) = load_like_supervisord(render_preloader(preload, tmp_path, opts), tmp_path)
    argv = shlex.split(process.command)
    encoded = argv[argv.index("--markets") + 1]
    assert json.loads(base64.urlsafe_b64decode(encoded)) == MARKETS


async def test_without_it_the_preloader_loads_no_markets(make_api: ApiFactory) -> None:
    api = await make_api()
    await api.provision(ALICE, instanceId="b1")
    assert api.runtime.launches["pool-1"].agent_env["PRELOAD_MARKETS"] == ""
    opts = ProgramOptions(log_dir=Path("/tmp"), run_dir=Path("/tmp/run"))
    preload = PythonCommand("/usr/bin/python3", "/bin/freqtrade", [])
    assert "--markets" not in render_preloader(preload, Path("/tmp"), opts)
