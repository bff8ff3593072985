"""PRELOAD_IMMORTAL from the controller's settings to each pool's preloader command line."""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest

from agent.programs import ProgramOptions, PythonCommand, render_preloader
from common.settings import AgentSettings, ControllerSettings, SettingsError
from tests.unit.agent.test_programs import load_like_supervisord
from tests.unit.controller.apps import ALICE, ApiFactory


def test_it_is_auto_unless_set_and_refuses_other_words() -> None:
    assert ControllerSettings.from_env({}).preload_immortal == "auto"
    assert ControllerSettings.from_env({"PRELOAD_IMMORTAL": "off"}).preload_immortal == "off"
    with pytest.raises(SettingsError, match="PRELOAD_IMMORTAL"):
        ControllerSettings.from_env({"PRELOAD_IMMORTAL": "yes please"})


@pytest.mark.parametrize("value", ["auto", "on", "off"])
async def test_each_pool_agent_gets_it_and_its_preloader_runs_with_it(
    make_api: ApiFactory, tmp_path: Path, value: str
) -> None:
    api = await make_api(PRELOAD_IMMORTAL=value)
    await api.provision(ALICE, instanceId="b1")
    env = api.runtime.launches["pool-1"].agent_env
    agent = AgentSettings.from_env({"POOL_ID": "p", "POOL_TOKEN": "t", **env})
    assert agent.preload_immortal == value
    (tmp_path / "logs").mkdir()
    opts = ProgramOptions(
        log_dir=tmp_path / "logs", run_dir=tmp_path / "run", preload_immortal=value
    )
    preload = PythonCommand("/usr/bin/python3", "/bin/freqtrade", [])
    _name, (process,) = load_like_supervisord(render_preloader(preload, tmp_path, opts), tmp_path)
    argv = shlex.split(process.command)
    assert argv[argv.index("--immortal") + 1] == value
