"""The command line's settings (`ftpool bots`, `ftpool upgrade`, ...): which controller
to talk to and which token to send. Read from the environment only (a `.env` file is the
controller's); an empty value is unset. What wins over what (flags, then these, then the
config file) is the client's to decide: controller/client/config.py.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from common.settings.loading import _build
from common.settings.parsing import setting, text


@dataclass(frozen=True)
class ClientSettings:
    url: str = setting("FTPOOL_URL", text, "", "the controller's URL, after --url")
    token: str = setting("FTPOOL_TOKEN", text, "", "the API token, after --token/--token-file")
    token_file: str = setting(
        "FTPOOL_TOKEN_FILE", text, "", "a file holding the API token, after FTPOOL_TOKEN"
    )
    config: str = setting("FTPOOL_CONFIG", text, "", "the config file, after --config")

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> ClientSettings:
        settings: ClientSettings = _build(cls, os.environ if env is None else env)
        return settings
