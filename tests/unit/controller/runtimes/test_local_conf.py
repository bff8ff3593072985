"""Both supervisord configurations, the local runtime's and the pool image's, run the event
listener where the agent listens for it, and supervisord itself accepts them."""

from __future__ import annotations

import shlex
from pathlib import Path

from supervisor.options import EventListenerPoolConfig, ServerOptions

from agent.eventlistener import SOCKET_NAME
from common.settings import AgentSettings
from controller.runtimes.base import PoolLaunch
from controller.runtimes.local_conf import supervisord_conf

IMAGE_CONF = Path(__file__).parents[4] / "images" / "pool" / "supervisord.conf"


def groups(conf: Path) -> dict[str, object]:
    """supervisord's own reading of a configuration: its process groups by name."""
    options = ServerOptions()
    options.configfile = str(conf)
    options.process_config(do_usage=False)
    return {g.name: g for g in options.process_group_configs}


def listener_socket(group: object) -> str:
    """The --socket the listener is started with; the listener runs alone in its pool."""
    assert isinstance(group, EventListenerPoolConfig)
    assert [e.__name__ for e in group.pool_events] == ["ProcessStateEvent"]
    (process,) = group.process_configs
    assert process.stdout_logfile is None  # its stdout is the protocol, never a log
    argv = shlex.split(process.command)
    assert "agent.eventlistener" in argv or argv[argv.index("-I") + 2].endswith("eventlistener.py")
    return argv[argv.index("--socket") + 1]


def test_the_local_runtimes_listener_tells_the_pools_agent(tmp_path: Path) -> None:
    pool = tmp_path / "pools" / "pool-1"
    (pool / "logs").mkdir(parents=True)
    launch = PoolLaunch(pool_id="pool-1", token="t" * 64, capacity=2, port_start=25000,
                        controller_url="ws://127.0.0.1:1/api/agents/ws")  # fmt: skip
    conf = pool / "supervisord.conf"
    conf.write_text(supervisord_conf(pool, launch))
    found = groups(conf)
    assert {"agent", "agent-events"} <= found.keys()
    agent = AgentSettings.from_env({"POOL_ID": "pool-1", "POOL_TOKEN": "t", "POOL_DIR": str(pool)})
    assert listener_socket(found["agent-events"]) == str(agent.pool_dir / "run" / SOCKET_NAME)


def test_the_pool_images_listener_tells_the_containers_agent(tmp_path: Path) -> None:
    # The image's directories, moved under tmp_path so that supervisord can check them here.
    text = IMAGE_CONF.read_text()
    for directory in ("/var/log/supervisor", "/var/run/supervisor", "/pool/programs"):
        (tmp_path / directory.strip("/")).mkdir(parents=True)
        text = text.replace(f"={directory}", f"={tmp_path}{directory}")
    conf = tmp_path / "supervisord.conf"
    conf.write_text(text)
    found = groups(conf)
    assert {"agent", "agent-events"} <= found.keys()
    # The image's agent runs with POOL_DIR=/pool (images/pool/Dockerfile).
    dockerfile = (IMAGE_CONF.parent / "Dockerfile").read_text()
    assert "POOL_DIR=/pool " in dockerfile
    assert listener_socket(found["agent-events"]) == f"/pool/run/{SOCKET_NAME}"
