"""Settings from the environment and a `.env` file.

The environment wins over `.env`. Every value is parsed and range-checked at
start-up; one bad value stops the process with a message naming the variable.

One module per domain defines its settings (variable, default, parser, description):
`core` (the controller process, HTTP, auth, log level), `health`, `pools` (incl. agents'
heartbeats and fencing), `runtimes` (local, docker, swarm), `limits`, `bots` (launch and
strategies), `market_data`, `backups`, `ui` and `heap`; `controller` and `agent` gather them
into the two processes' settings (`HealthcheckSettings`: the one the agent's health check
reads), `client` is the command line's, `parsing` and `loading` are what they are made and
read with.
A domain module has a function per setting, not a field: a dataclass field belongs to the one
class it is declared in, and several settings are both the controller's and the agent's.
"""

from common.settings.agent import AgentSettings, HealthcheckSettings
from common.settings.client import ClientSettings
from common.settings.controller import ControllerSettings
from common.settings.loading import _build, describe, load_env
from common.settings.parsing import SettingsError, setting

__all__ = [
    "AgentSettings",
    "ClientSettings",
    "ControllerSettings",
    "HealthcheckSettings",
    "SettingsError",
    "_build",
    "describe",
    "load_env",
    "setting",
]
