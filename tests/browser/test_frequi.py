"""FreqUI through the controller, in a real headless chromium: a bot's page links to the
operator's FreqUI (FREQUI_URL) and shows what to add there; from FreqUI's origin the
browser signs in and calls the bot through the controller as FreqUI does (CORS allowed for
that origin only), and from another origin the browser refuses to read the answers."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
from aiohttp import web

from tests.browser.browser import Browser
from tests.support import free_port, user_token

pytestmark = pytest.mark.browser

ALICE = user_token("alice")
POOL_PORT = "30500"
# What FreqUI does once a bot is added: log in with basic auth (the user id and a platform
# token), then call the bot with the access token the controller issued.
FREQUI_FLOW = """
const [url, user, token, done] = arguments;
(async () => {
  const login = await fetch(`${url}/api/v1/token/login`, {
    method: "POST", headers: {Authorization: "Basic " + btoa(`${user}:${token}`)}});
  const tokens = await login.json();
  const config = await fetch(`${url}/api/v1/show_config`, {
    headers: {Authorization: `Bearer ${tokens.access_token}`}});
  done([login.status, config.status, (await config.json()).fake]);
})().catch((exc) => done(["refused", exc.name]));
"""


@asynccontextmanager
async def frequi_site(port: int) -> AsyncIterator[None]:
    """A page standing in for where FreqUI is served: another origin than the controller."""

    async def page(_request: web.Request) -> web.Response:
        return web.Response(text="<!doctype html><title>FreqUI</title>", content_type="text/html")

    app = web.Application()
    app.router.add_get("/", page)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield
    finally:
        await runner.cleanup()


async def test_a_bot_opens_in_frequi_through_the_controller(harness_factory, browser: Browser):
    port = free_port()
    frequi = f"http://127.0.0.1:{port}"
    async with frequi_site(port):
        h = await harness_factory(POOL_BASE_PORT=POOL_PORT, FREQUI_URL=f"{frequi}/")
        browser.base = h.base
        await h.provision(ALICE, instanceId="alice-1")
        await h.wait_running("alice-1")

        await browser.sign_in(ALICE)
        await browser.open("/ui/bots/alice-1")
        url = await browser.wait_text("#frequi-url", lambda t: t.startswith("http"))
        assert url == f"{h.base}/bots/alice-1"
        assert await browser.text("#frequi-user") == "alice"
        await browser.screenshot("bot-frequi")

        assert await browser.follow_to_new_window("#frequi-open") == f"{frequi}/"
        assert await browser.script("return document.title") == "FreqUI"
        # FreqUI's window knows nothing of the dashboard it came from (noopener).
        assert await browser.script("return window.opener") is None
        # On FreqUI's page: the bot's URL, the user id and her token, as she adds the bot.
        assert await browser.async_script(FREQUI_FLOW, url, "alice", ALICE) == [200, 200, True]

        # The same page from another origin: the controller grants it nothing, and the
        # browser does not let it read the answers.
        await browser.open_url(f"http://localhost:{port}/")
        assert await browser.async_script(FREQUI_FLOW, url, "alice", ALICE) == [
            "refused", "TypeError",
        ]  # fmt: skip
