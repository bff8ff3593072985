"""FreqTrade's own login and token refresh under the bot proxy's prefix, answered by the
controller with its own tokens: FreqUI and freqtrade-client log in to a bot as they would
to FreqTrade, with a platform token, and never learn the bot's password.

Registered before the bot proxy (controller/api/proxy.py), whose catch-all route would
otherwise pass these paths to the bot.
"""

from __future__ import annotations

import base64

from aiohttp import web

from controller.api.middleware import AUTHENTICATOR, public
from controller.api.spec import STR, Operations, answer, obj, op
from controller.bots.manager import BotManager
from controller.errors import Unauthorized

OPERATIONS: Operations = {
    ("POST", "/bots/{instanceId}/api/v1/token/login"): op(
        "FreqTrade's login, answered by the controller with its own tokens",
        security=[{"basicAuth": []}], errors=(400, 403, 404), tags=("bot proxy",),
        description="Basic auth: the user id and a platform token (not one login issued).",
        ok={200: answer(obj({"access_token": STR, "refresh_token": STR}))},
    ),
    ("POST", "/bots/{instanceId}/api/v1/token/refresh"): op(
        "a new access token for a refresh token", security=[{"bearerToken": []}],
        errors=(400, 403, 404), tags=("bot proxy",),
        ok={200: answer(obj({"access_token": STR}))},
    ),
}  # fmt: skip


class APIBotTokens:
    operations = OPERATIONS

    def __init__(self, bots: BotManager) -> None:
        self.bots = bots

    def routes(self) -> list[web.RouteDef]:
        return [
            web.post("/bots/{instanceId}/api/v1/token/login", self.token_login),
            web.post("/bots/{instanceId}/api/v1/token/refresh", self.token_refresh),
        ]

    @public
    async def token_login(self, request: web.Request) -> web.Response:
        auth = request.app[AUTHENTICATOR]
        header = request.headers.get("Authorization", "")
        if not header.lower().startswith("basic "):
            raise Unauthorized("token/login needs basic auth: user id and an API token")
        password = header[6:].strip()
        who = auth.basic(password)
        if auth.is_issued(_basic_password(password)):
            # Logging in with a token that login issued would renew access forever.
            raise Unauthorized("log in with a platform token, not one issued by bot login")
        self.bots.get(who, request.match_info["instanceId"])
        return web.json_response(
            {"access_token": auth.issue(who), "refresh_token": auth.issue(who, "refresh")}
        )

    @public
    async def token_refresh(self, request: web.Request) -> web.Response:
        auth = request.app[AUTHENTICATOR]
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token:
            raise Unauthorized("token/refresh needs the refresh token as Bearer")
        who = auth.bearer(token.strip(), kind="refresh")
        self.bots.get(who, request.match_info["instanceId"])
        return web.json_response({"access_token": auth.issue(who)})


def _basic_password(value: str) -> str:
    """The password half of a basic-auth value (already validated by Authenticator.basic)."""
    return base64.b64decode(value).decode().partition(":")[2]
