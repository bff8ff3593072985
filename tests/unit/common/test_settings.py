"""Settings: the seed's defaults, validation naming each variable, .env below the environment."""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from pathlib import Path

import pytest

from common.settings import (
    AgentSettings,
    ControllerSettings,
    SettingsError,
    _build,
    describe,
    load_env,
    setting,
)

SEED_DEFAULTS = {
    "pool_mode_enabled": True,
    "max_bots_per_container": 10,
    "pool_base_port": 9000,
    "health_check_interval_ms": 30000,
    "bot_ping_timeout_ms": 5000,
    "max_restart_attempts": 3,
    "restart_cooldown_ms": 60000,
    "controller_host": "127.0.0.1",
    "controller_port": 5000,
    "bot_command": ("freqtrade", "trade"),
}


def test_defaults_match_the_seed() -> None:
    settings = ControllerSettings.from_env({})
    for name, value in SEED_DEFAULTS.items():
        assert getattr(settings, name) == value, name
    assert settings.pool_tenancy == "shared"
    assert settings.placement == "fill"
    assert settings.admin_token == ""
    assert settings.bot_base_dir.is_absolute()
    assert settings.database_path == settings.bot_base_dir / "ftpool.sqlite3"


def test_describe_lists_every_seed_variable_with_its_default() -> None:
    rows = {env: default for env, default, _doc in describe(ControllerSettings)}
    assert rows["POOL_MODE_ENABLED"] == "true"
    assert rows["MAX_BOTS_PER_CONTAINER"] == "10"
    assert rows["POOL_BASE_PORT"] == "9000"
    assert rows["HEALTH_CHECK_INTERVAL"] == "30000"
    assert rows["BOT_PING_TIMEOUT"] == "5000"
    assert rows["MAX_RESTART_ATTEMPTS"] == "3"
    assert rows["RESTART_COOLDOWN"] == "60000"


def test_values_are_parsed() -> None:
    settings = ControllerSettings.from_env(
        {
            "POOL_MODE_ENABLED": " No ",
            "MAX_BOTS_PER_CONTAINER": "25",
            "POOL_BASE_PORT": "10000",
            "BOT_COMMAND": "python -m 'my bot' --flag",
            "POOL_TENANCY": "per-user",
            "POOL_PLACEMENT": "spread",
            "DATABASE": "relative.db",
        }
    )
    assert settings.pool_mode_enabled is False
    assert settings.max_bots_per_container == 25
    assert settings.pool_base_port == 10000
    assert settings.bot_command == ("python", "-m", "my bot", "--flag")
    assert settings.pool_tenancy == "per-user"
    assert settings.placement == "spread"
    assert settings.database_path.is_absolute()
    assert settings.database_path.name == "relative.db"


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("POOL_MODE_ENABLED", "maybe"),
        ("MAX_BOTS_PER_CONTAINER", "0"),
        ("MAX_BOTS_PER_CONTAINER", "ten"),
        ("MAX_BOTS_PER_CONTAINER", "1.5"),
        ("POOL_BASE_PORT", "80"),
        ("POOL_BASE_PORT", "70000"),
        ("HEALTH_CHECK_INTERVAL", "0"),
        ("BOT_PING_TIMEOUT", "-1"),
        ("MAX_RESTART_ATTEMPTS", "101"),
        ("RESTART_COOLDOWN", ""),
        ("CONTROLLER_PORT", "65536"),
        ("BOT_COMMAND", ""),
        ("BOT_COMMAND", "freqtrade 'unclosed"),
        ("POOL_TENANCY", "everyone"),
        ("POOL_PLACEMENT", "random"),
        ("ADMIN_TOKEN", "short"),
        ("JWT_SECRET", "x" * 31),
        ("LOG_LEVEL", "verbose"),
        ("BOT_BASE_DIR", "  "),
        ("FREQUI_URL", "javascript:alert(1)"),
        ("FREQUI_URL", "frequi.example"),
        ("FREQUI_URL", "https://user:pw@frequi.example/"),
        ("FREQUI_URL", "https://frequi.example/?next=x"),
        ("LEGACY_CONTAINER_MEMORY", "lots"),
        ("POOL_CGROUPS", "v3"),
        ("POOL_CGROUP_ROOT", "sys/fs/cgroup"),
        ("BOT_CPU_LIMIT", "half"),
        ("BOT_CPU_LIMIT", "-1"),
        ("BOT_CPU_LIMIT", "nan"),
    ],
)
def test_an_invalid_value_names_its_variable(variable: str, value: str) -> None:
    with pytest.raises(SettingsError, match=variable):
        ControllerSettings.from_env({variable: value})


def test_every_invalid_variable_is_reported_at_once() -> None:
    with pytest.raises(SettingsError) as info:
        ControllerSettings.from_env(
            {
                "POOL_MODE_ENABLED": "perhaps",
                "MAX_BOTS_PER_CONTAINER": "-3",
                "POOL_BASE_PORT": "port",
                "RESTART_COOLDOWN": "soon",
            }
        )
    message = str(info.value)
    for variable in (
        "POOL_MODE_ENABLED",
        "MAX_BOTS_PER_CONTAINER",
        "POOL_BASE_PORT",
        "RESTART_COOLDOWN",
    ):
        assert variable in message
    assert "HEALTH_CHECK_INTERVAL" not in message


def test_settings_error_is_a_value_error() -> None:
    assert issubclass(SettingsError, ValueError)


def test_dotenv_is_read_and_the_environment_wins(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    dotenv = tmp_path / ".env"
    dotenv.write_text(
        "MAX_BOTS_PER_CONTAINER=5\nPOOL_BASE_PORT=9100\n# a comment\nPOOL_MODE_ENABLED=false\n"
    )
    monkeypatch.delenv("POOL_BASE_PORT", raising=False)
    monkeypatch.delenv("POOL_MODE_ENABLED", raising=False)
    monkeypatch.setenv("MAX_BOTS_PER_CONTAINER", "7")
    env = load_env(dotenv=dotenv)
    assert env["POOL_BASE_PORT"] == "9100"
    assert env["MAX_BOTS_PER_CONTAINER"] == "7"
    settings = ControllerSettings.from_env(env)
    assert settings.pool_base_port == 9100
    assert settings.max_bots_per_container == 7
    assert settings.pool_mode_enabled is False


def test_env_file_variable_selects_the_dotenv(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    dotenv = tmp_path / "custom.env"
    dotenv.write_text("RESTART_COOLDOWN=1234\n")
    monkeypatch.delenv("RESTART_COOLDOWN", raising=False)
    monkeypatch.setenv("ENV_FILE", str(dotenv))
    assert ControllerSettings.from_env().restart_cooldown_ms == 1234


def test_a_missing_dotenv_is_not_an_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FTPOOL_UNIT_MARKER", "yes")
    env = load_env(dotenv=tmp_path / "does-not-exist.env")
    assert env["FTPOOL_UNIT_MARKER"] == "yes"


def test_an_invalid_value_in_dotenv_is_reported(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    dotenv = tmp_path / ".env"
    dotenv.write_text("POOL_BASE_PORT=nine-thousand\n")
    monkeypatch.delenv("POOL_BASE_PORT", raising=False)
    with pytest.raises(SettingsError, match="POOL_BASE_PORT"):
        ControllerSettings.from_env(load_env(dotenv=dotenv))


AGENT_ENV = {"POOL_ID": "pool-1", "POOL_TOKEN": "secret-token"}


def test_agent_settings_accept_a_valid_pool() -> None:
    settings = AgentSettings.from_env({**AGENT_ENV, "POOL_CAPACITY": "4"})
    assert settings.pool_id == "pool-1"
    assert settings.pool_token == "secret-token"
    assert settings.capacity == 4
    assert settings.port_start == 9000


@pytest.mark.parametrize("pool_id", ["", "../x", "a b", "pool\n[program:evil]", "-x", "x" * 65])
def test_agent_settings_reject_a_bad_pool_id(pool_id: str) -> None:
    with pytest.raises(SettingsError, match="POOL_ID"):
        AgentSettings.from_env({**AGENT_ENV, "POOL_ID": pool_id})


def test_agent_settings_require_a_token() -> None:
    with pytest.raises(SettingsError, match="POOL_TOKEN"):
        AgentSettings.from_env({"POOL_ID": "pool-1"})


def test_agent_settings_report_both_problems() -> None:
    with pytest.raises(SettingsError) as info:
        AgentSettings.from_env({})
    assert "POOL_ID" in str(info.value)
    assert "POOL_TOKEN" in str(info.value)


def test_agent_settings_validate_numbers() -> None:
    with pytest.raises(SettingsError, match="POOL_CAPACITY"):
        AgentSettings.from_env({**AGENT_ENV, "POOL_CAPACITY": "0"})


@pytest.mark.parametrize("variable", ["ADMIN_TOKEN", "JWT_SECRET"])
def test_an_invalid_secret_is_named_but_never_shown(variable: str) -> None:
    leaked = "hunter2-but-too-short"
    with pytest.raises(SettingsError) as info:
        ControllerSettings.from_env({variable: leaked})
    message = str(info.value)
    assert variable in message and "at least 32 characters" in message
    assert leaked not in message and "hunter2" not in message


def test_no_secret_like_setting_is_ever_echoed() -> None:
    """Every variable named like a key, secret, password or token, present or future."""

    def refuse(_raw: str) -> str:
        raise ValueError("is refused")

    @dataclass(frozen=True)
    class Secrets:
        api_key: str = setting("EXCHANGE_API_KEY", refuse, "", "")
        password: str = setting("DB_PASSWORD", refuse, "", "")
        token: str = setting("POOL_TOKEN", refuse, "", "")
        secret: str = setting("JWT_SECRET", refuse, "", "")
        plain: str = setting("POOL_IMAGE", refuse, "", "")

    env = {f.metadata["env"]: f"value-of-{f.name}" for f in fields(Secrets)}
    with pytest.raises(SettingsError) as info:
        _build(Secrets, env)
    message = str(info.value)
    for name in ("api_key", "password", "token", "secret"):
        assert f"value-of-{name}" not in message
    assert "'value-of-plain'" in message  # an ordinary value still helps whoever mistyped it
    assert "EXCHANGE_API_KEY is refused (got 16 characters; the value is not shown)" in message


def test_backups_default_beside_the_pools_also_as_the_docker_host_sees_them() -> None:
    local = ControllerSettings.from_env({"BOT_BASE_DIR": "/data"})
    assert local.backups_path == Path("/data/backups") == local.host_backups_dir
    boxed = ControllerSettings.from_env({"BOT_BASE_DIR": "/data", "POOL_HOST_DIR": "/srv/ft/pools"})
    assert boxed.backups_path == Path("/data/backups")
    assert boxed.host_backups_dir == Path("/srv/ft/backups")
    off = ControllerSettings.from_env({"BACKUP_DIR": "off"})
    assert off.backups_path is None and off.backup_interval_ms == 5000


def test_a_containerized_controller_with_its_own_backup_dir_must_say_where_it_is() -> None:
    env = {"BOT_BASE_DIR": "/data", "POOL_HOST_DIR": "/srv/ft/pools", "BACKUP_DIR": "/backups"}
    with pytest.raises(SettingsError, match="BACKUP_HOST_DIR"):
        ControllerSettings.from_env(env)
    moved = ControllerSettings.from_env({**env, "BACKUP_HOST_DIR": "/mnt/disk2/ftpool"})
    assert moved.host_backups_dir == Path("/mnt/disk2/ftpool")
    with pytest.raises(SettingsError, match="BACKUP_INTERVAL"):
        ControllerSettings.from_env({"BACKUP_INTERVAL": "10"})


def test_fencing_is_off_on_one_host_and_on_with_swarm_unless_set() -> None:
    for runtime in ("local", "docker"):
        env = {"POOL_RUNTIME": runtime, "AGENT_CONTROLLER_URL": "ws://c/api/agents/ws"}
        assert ControllerSettings.from_env(env).fence_timeout_ms == 0
    # By the runtime's name: the swarm runtime is on a branch of its own.
    swarm = replace(ControllerSettings.from_env({}), pool_runtime="swarm")
    assert swarm.fence_timeout_ms == 30000
    assert replace(swarm, fence_timeout_setting=0).fence_timeout_ms == 0
    assert ControllerSettings.from_env({"AGENT_FENCE_TIMEOUT": "45000"}).fence_timeout_ms == 45000
    for off in ("off", "0", " OFF "):
        assert ControllerSettings.from_env({"AGENT_FENCE_TIMEOUT": off}).fence_timeout_ms == 0
    with pytest.raises(SettingsError, match="AGENT_FENCE_TIMEOUT must be auto, off or"):
        ControllerSettings.from_env({"AGENT_FENCE_TIMEOUT": "soon"})
    assert ControllerSettings.from_env({}).fence_margin_ms == 60000


def test_an_agent_fences_only_when_told() -> None:
    env = {"POOL_ID": "pool-1", "POOL_TOKEN": "t"}
    assert AgentSettings.from_env(env).fence_timeout_ms == 0  # a controller from before
    assert AgentSettings.from_env({**env, "AGENT_FENCE_TIMEOUT": "30000"}).fence_timeout_ms == 30000


def test_bots_get_the_bundled_sample_strategies_unless_told_otherwise(tmp_path: Path) -> None:
    bundled = ControllerSettings.from_env({}).strategies_path
    assert (bundled / "SampleStrategy.py").is_file()
    assert bundled == Path(__file__).resolve().parents[3] / "controller" / "strategies"
    own = ControllerSettings.from_env({"STRATEGIES_DIR": str(tmp_path)})
    assert own.strategies_path == tmp_path


def test_pool_storage_is_node_on_swarm_and_only_there() -> None:
    swarm = {"POOL_RUNTIME": "swarm", "AGENT_CONTROLLER_URL": "ws://10.0.0.1:5000/api/agents/ws"}
    assert ControllerSettings.from_env(swarm).node_storage
    assert not ControllerSettings.from_env({**swarm, "POOL_STORAGE": "shared"}).node_storage
    assert not ControllerSettings.from_env({}).node_storage  # local: the controller's own disk
    assert not ControllerSettings.from_env({"POOL_RUNTIME": "docker"}).node_storage
    with pytest.raises(SettingsError, match="POOL_STORAGE=node needs POOL_RUNTIME=swarm"):
        ControllerSettings.from_env({"POOL_RUNTIME": "docker", "POOL_STORAGE": "node"})


def test_per_bot_cgroup_settings() -> None:
    s = ControllerSettings.from_env({"POOL_CGROUPS": "v1", "BOT_CPU_LIMIT": "0.5"})
    assert (s.pool_cgroups, s.bot_cpu_limit, str(s.pool_cgroup_root)) == (
        "v1", 0.5, "/sys/fs/cgroup",
    )  # fmt: skip
    assert ControllerSettings.from_env({}).pool_cgroups == "off"
    assert ControllerSettings.from_env({"BOT_CPU_LIMIT": ""}).bot_cpu_limit == 0
