"""`python -m agent`: run the pool agent with settings from the environment."""

import asyncio
import contextlib
import sys

from agent.app import Agent
from common.logging import setup_logging
from common.settings import AgentSettings, SettingsError


def main() -> int:
    try:
        settings = AgentSettings.from_env()
    except SettingsError as exc:
        print(f"ftpool agent: {exc}", file=sys.stderr)
        return 2
    setup_logging(settings.log_level)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(Agent(settings).run())
    return 0


if __name__ == "__main__":
    sys.exit(main())
