"""The supervisord.conf of a pool of the local runtime: its supervisord, its agent and the
agent's event listener, as the pool image's images/pool/supervisord.conf has them."""

from __future__ import annotations

import sys
from pathlib import Path

from agent import eventlistener
from agent.programs import command_line
from common.ini import ini_environment, ini_value
from controller.runtimes.base import PoolLaunch


def supervisord_conf(pool_dir: Path, launch: PoolLaunch) -> str:
    d = pool_dir
    agent_env = {
        "CONTROLLER_URL": launch.controller_url,
        "POOL_ID": launch.pool_id,
        "POOL_TOKEN": launch.token,
        "POOL_DIR": str(d),
        "LOG_DIR": str(d / "logs"),
        "SUPERVISOR_SOCKET": str(d / "supervisor.sock"),
        "POOL_CAPACITY": str(launch.capacity),
        "POOL_PORT_START": str(launch.port_start),
        **launch.agent_env,
    }
    return "\n".join([
        "[unix_http_server]",
        f"file={ini_value(str(d / 'supervisor.sock'))}",
        "chmod=0700",
        "",
        "[supervisord]",
        f"logfile={ini_value(str(d / 'logs' / 'supervisord.log'))}",
        f"pidfile={ini_value(str(d / 'supervisord.pid'))}",
        f"childlogdir={ini_value(str(d / 'logs'))}",
        f"directory={ini_value(str(d))}",
        "minfds=4096",
        "",
        "[rpcinterface:supervisor]",
        "supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface",
        "",
        "[supervisorctl]",
        f"serverurl=unix://{ini_value(str(d / 'supervisor.sock'))}",
        "",
        "[program:agent]",
        f"command={ini_value(sys.executable)} -m agent",
        f"directory={ini_value(str(d))}",
        f"environment={ini_environment(agent_env)}",
        "autostart=true",
        "autorestart=true",
        "startsecs=1",
        "startretries=1000",
        "stopwaitsecs=10",
        "redirect_stderr=true",
        f"stdout_logfile={ini_value(str(d / 'logs' / 'agent.log'))}",
        "stdout_logfile_maxbytes=10MB",
        "",
        *listener_section(d),
        "[include]",
        f"files={ini_value(str(d / 'programs' / '*.conf'))}",
        "",
    ])  # fmt: skip


def listener_section(d: Path) -> list[str]:
    """supervisord's process-state events, passed on to the agent (agent/eventlistener.py);
    as in the pool image's supervisord.conf."""
    socket = d / "run" / eventlistener.SOCKET_NAME
    argv = [sys.executable, "-I", "-S", eventlistener.__file__, "--socket", str(socket)]
    return [
        "[eventlistener:agent-events]",
        f"command={command_line(argv)}",
        f"directory={ini_value(str(d))}",
        "events=PROCESS_STATE",
        "buffer_size=100",
        "autostart=true",
        "autorestart=true",
        "startsecs=1",
        "startretries=1000",
        # stdout is the listener's protocol with supervisord: never a log.
        "stdout_logfile=NONE",
        f"stderr_logfile={ini_value(str(d / 'logs' / 'eventlistener.log'))}",
        "stderr_logfile_maxbytes=1MB",
        "",
    ]
