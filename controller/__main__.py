"""`python -m controller`: run the controller with settings from the environment and .env."""

from __future__ import annotations

import os
import sys

from aiohttp import web

from common.logging import setup_logging
from common.settings import ControllerSettings, SettingsError
from controller.app import build, create_app
from controller.errors import FtpoolError
from controller.loop import new_event_loop


def _banner(settings: ControllerSettings, admin_token_file: str | None) -> str:
    url = f"http://{settings.controller_host}:{settings.controller_port}"
    token = f"$(cat {admin_token_file})" if admin_token_file else "$ADMIN_TOKEN"
    # The client reads a token file itself (or the environment): never on its command line.
    client_token = f"FTPOOL_TOKEN_FILE={admin_token_file}" if admin_token_file else (
        'FTPOOL_TOKEN="$ADMIN_TOKEN"')  # fmt: skip
    return (
        f"ftpool controller on {url} (runtime {settings.pool_runtime}, "
        f"data in {settings.bot_base_dir})\n"
        f'  try: curl -H "Authorization: Bearer {token}" {url}/api/pool/status\n'
        f"   or: FTPOOL_URL={url} {client_token} ftpool status\n"
    )


def main() -> int:
    try:
        settings = ControllerSettings.from_env()
    except SettingsError as exc:
        print(f"ftpool controller: {exc}", file=sys.stderr)
        return 2
    setup_logging(settings.log_level)
    # The store, generated secrets and bot configs hold credentials: private to this user.
    os.umask(0o077)
    controller = build(settings)
    app = create_app(controller)
    admin_file = str(controller.admin_token_file) if controller.admin_token_file else None

    async def banner(_app: web.Application) -> None:
        # After the store opened and pools were adopted: the controller is really up.
        print(_banner(settings, admin_file), file=sys.stderr, flush=True)

    app.on_startup.append(banner)
    try:
        web.run_app(
            app,
            host=settings.controller_host,
            port=settings.controller_port,
            print=None,
            access_log=None,
            loop=new_event_loop(settings.event_loop),
        )
    except FtpoolError as exc:
        # The store cannot be read, or the runtime (Docker) cannot be reached.
        print(f"ftpool controller: {exc}", file=sys.stderr)
        return 3
    return 0


if __name__ == "__main__":
    sys.exit(main())
