"""A bot's FreqTrade config: user overrides merged, controller-owned keys untouchable."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from common.ids import InvalidId
from common.protocol import check_relpath
from controller.botconfig import (
    DEFAULT_CONFIG,
    MAX_CONFIG_BYTES,
    PROTECTED_KEYS,
    bot_files,
    freqtrade_config,
    load_strategy,
    new_secrets,
    validate_overrides,
)
from controller.errors import BadRequest
from controller.records import BotRecord, BotSecrets

SECRETS = BotSecrets("ftpool", "bot-password-xyz", "bot-jwt-secret-xyz", "bot-ws-token-xyz")


def record(config: dict[str, Any] | None = None, **over: Any) -> BotRecord:
    values: dict[str, Any] = {
        "id": "bot-1",
        "user_id": "alice",
        "pool_id": "pool-1",
        "slot": 3,
        "port": 9003,
        "strategy": "SampleStrategy",
        "strategy_source": b"class SampleStrategy: ...\n",
        "config": config or {},
        "secrets": SECRETS,
    }
    values.update(over)
    return BotRecord(**values)


@pytest.mark.parametrize("key", sorted(PROTECTED_KEYS))
def test_protected_keys_are_rejected(key: str) -> None:
    with pytest.raises(BadRequest, match=key):
        validate_overrides({key: "anything", "max_open_trades": 1})


def test_controller_owned_keys_are_protected() -> None:
    for key in ("api_server", "db_url", "user_data_dir", "strategy", "strategy_path"):
        assert key in PROTECTED_KEYS


@pytest.mark.parametrize("config", [[1], "text", 3, True])
def test_config_must_be_an_object(config: object) -> None:
    with pytest.raises(BadRequest):
        validate_overrides(config)


def test_no_config_is_an_empty_override() -> None:
    assert validate_overrides(None) == {}


def test_config_size_and_depth_are_bounded() -> None:
    with pytest.raises(BadRequest):
        validate_overrides({"x": "y" * MAX_CONFIG_BYTES})
    deep: dict[str, Any] = {}
    node = deep
    for _ in range(20):
        node["a"] = {}
        node = node["a"]
    with pytest.raises(BadRequest):
        validate_overrides(deep)


def test_hostile_nesting_is_a_bad_request_not_a_crash() -> None:
    # As deep as a JSON body can nest before the parser itself refuses it.
    deep = json.loads('{"a":' * 900 + "1" + "}" * 900)
    with pytest.raises(BadRequest):
        validate_overrides(deep)


def test_overrides_are_deep_merged() -> None:
    before = copy.deepcopy(DEFAULT_CONFIG)
    bot = record(
        {"exchange": {"name": "kraken", "key": "k"}, "max_open_trades": 7, "extra": {"x": 1}}
    )
    config = freqtrade_config(bot, "127.0.0.1")
    assert config["exchange"]["name"] == "kraken"
    assert config["exchange"]["key"] == "k"
    assert config["exchange"]["pair_whitelist"] == DEFAULT_CONFIG["exchange"]["pair_whitelist"]
    assert config["max_open_trades"] == 7
    assert config["extra"] == {"x": 1}
    assert config["stake_currency"] == DEFAULT_CONFIG["stake_currency"]
    assert config["dry_run"] is True
    assert config["bot_name"] == "bot-1"
    assert before == DEFAULT_CONFIG  # the defaults are never modified


def test_api_server_is_always_the_controllers() -> None:
    bot = record({"bot_name": "mine"})
    # Even if a record somehow held an api_server (e.g. an older row), it is replaced.
    bot.config["api_server"] = {"listen_ip_address": "0.0.0.0", "listen_port": 1, "password": "x"}
    bot.config["strategy"] = "Evil"
    bot.config["user_data_dir"] = "/etc"
    config = freqtrade_config(bot, "127.0.0.1")
    api = config["api_server"]
    assert api["enabled"] is True
    assert api["listen_ip_address"] == "127.0.0.1"
    assert api["listen_port"] == 9003
    assert api["username"] == SECRETS.username
    assert api["password"] == SECRETS.password
    assert api["jwt_secret_key"] == SECRETS.jwt_secret
    assert api["ws_token"] == SECRETS.ws_token
    assert set(api) >= {"enabled", "listen_ip_address", "listen_port", "username", "password"}
    assert config["strategy"] == "SampleStrategy"
    assert config["user_data_dir"] == "user_data"
    assert config["bot_name"] == "mine"


def test_bot_files_hold_the_config_and_the_strategy() -> None:
    bot = record({"max_open_trades": 2})
    files = bot_files(bot, "127.0.0.1")
    assert set(files) == {"config.json", "user_data/strategies/SampleStrategy.py"}
    assert files["user_data/strategies/SampleStrategy.py"] == bot.strategy_source
    config = json.loads(files["config.json"])
    assert config == freqtrade_config(bot, "127.0.0.1")
    assert config["max_open_trades"] == 2
    for path in files:
        assert check_relpath(path) == path  # acceptable to the agent protocol


def test_new_secrets_are_random_and_long() -> None:
    a, b = new_secrets(), new_secrets()
    assert a.password != b.password
    assert a.jwt_secret != b.jwt_secret
    assert a.ws_token != b.ws_token
    assert len(a.password) >= 24
    assert len(a.jwt_secret) >= 48
    assert "password" not in repr(a) or a.password not in repr(a)


def test_secrets_never_appear_in_reprs() -> None:
    bot = record()
    for secret in (SECRETS.password, SECRETS.jwt_secret, SECRETS.ws_token):
        assert secret not in repr(bot)
        assert secret not in repr(SECRETS)


@pytest.fixture
def strategies(tmp_path: Path) -> Path:
    d = tmp_path / "strategies"
    d.mkdir()
    (d / "MyStrategy.py").write_bytes(b"class MyStrategy: ...\n")
    (tmp_path / "Outside.py").write_bytes(b"secret outside\n")
    return d


def test_load_strategy(strategies: Path) -> None:
    assert load_strategy(strategies, "MyStrategy") == b"class MyStrategy: ...\n"


def test_bundled_sample_strategy_exists() -> None:
    from common.settings import ControllerSettings

    bundled = ControllerSettings.from_env({}).strategies_path
    assert b"SampleStrategy" in load_strategy(bundled, "SampleStrategy")


def test_unknown_strategy_is_a_bad_request(strategies: Path) -> None:
    with pytest.raises(BadRequest, match="unknown strategy"):
        load_strategy(strategies, "NoSuchStrategy")


@pytest.mark.parametrize(
    "name",
    ["../Outside", "..", "/etc/passwd", "MyStrategy.py", "My Strategy", "1Bad", "", "x" * 65,
     "Outside/../MyStrategy", "My\nStrategy"],
)  # fmt: skip
def test_invalid_strategy_names_are_rejected(strategies: Path, name: str) -> None:
    with pytest.raises(InvalidId):
        load_strategy(strategies, name)


def test_a_strategy_that_is_a_directory_is_a_bad_request(strategies: Path) -> None:
    (strategies / "Dir.py").mkdir()
    with pytest.raises(BadRequest):
        load_strategy(strategies, "Dir")
