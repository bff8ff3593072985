"""The dashboard in a real headless chromium against a real controller (local runtime, real
supervisord pools, fake FreqTrade bots): admin and user views, a stop and start seen live
without a reload, the log tail, hostile text shown as text, another user's bot refused,
and CSRF refused; screenshots under artifacts/browser/."""

from __future__ import annotations

import socket
import time

import pytest

from agent.versions import freqtrade_version
from controller.upgrade.state import PoolUpgrade, UpgradeRun
from tests.browser.browser import Browser
from tests.support import ADMIN_TOKEN, user_token

pytestmark = pytest.mark.browser

ALICE = user_token("alice")
BOB = user_token("bob")
# Would set window.pwned if it ever ran as HTML rather than showing as text.
HOSTILE = '<script>window.pwned=1</script><img src=x onerror="window.pwned=1">'
PORTS = {"POOL_BASE_PORT": "27000", "MAX_BOTS_PER_CONTAINER": "4"}


async def not_pwned(browser: Browser) -> None:
    assert await browser.script("return window.pwned === undefined") is True
    # The page's only script is its own; no element came from a bot's text.
    scripts = await browser.script("return [...document.scripts].map(s => s.src)")
    assert [s.rsplit("/", 1)[-1] for s in scripts] == ["dashboard.js"]
    assert await browser.script("return document.querySelectorAll('img').length") == 0


async def test_admin_and_user_dashboards(harness_factory, browser: Browser):
    h = await harness_factory(**PORTS)
    browser.base = h.base
    await h.provision(ALICE, instanceId="alice-1")
    await h.provision(BOB, instanceId="bob-1")
    await h.wait_running("alice-1")
    await h.wait_running("bob-1")
    # A hostile text in the events timeline, as any event's reason would arrive.
    h.controller.events.emit("bot_state", pool="pool-1", bot="alice-1", user="alice",
                             reason=HOSTILE)  # fmt: skip
    # Upgrade runs as the upgrader keeps them (the local runtime runs no images, so none
    # can run here; tests/e2e/docker/test_upgrade.py runs real ones): one that failed with
    # a hostile reason, and one going on.
    h.controller.upgrader.runs += [
        UpgradeRun("upgrade-1", "pool:b", "sha256:b", outcome="canary_failed", reason=HOSTILE,
                   finished_at=time.time(), pools=[PoolUpgrade(
                       "pool-1", "pool:a", "sha256:a", 2, canary=True, step="rolled_back")]),
        UpgradeRun("upgrade-2", "pool:c", "sha256:c", pools=[
            PoolUpgrade("pool-1", "pool:a", "sha256:a", 2, step="verifying")]),
    ]  # fmt: skip

    await browser.sign_in(ADMIN_TOKEN)
    await browser.wait_text("#pools tbody tr[data-pool='pool-1']", lambda t: "2/4" in t)
    await browser.wait_text("#bots tbody tr[data-bot='bob-1'] .state", lambda t: t == "running")
    assert await browser.texts("#bots tbody tr td:first-child") == ["alice-1", "bob-1"]
    assert "admin (admin)" in await browser.text("#who")
    # Where each pool runs and what it runs (the local runtime: this machine, no image),
    # and what pooling saves against both bots in a container of their own.
    pool = "#pools tbody tr[data-pool='pool-1']"
    assert await browser.text(f"{pool} .node") == socket.gethostname()
    assert await browser.text(f"{pool} .freqtrade") == freqtrade_version()
    assert await browser.text(f"{pool} .image") == "\u2013"  # none
    saved = await browser.wait_text(
        "#memory-saved", lambda t: "2 running bots" in t and "273.0 MiB each" in t
    )
    assert saved.startswith("memory saved against one container per bot: "), saved
    assert "MiB" in await browser.text(f"{pool} .saved")
    await browser.wait_text("#runs-summary", lambda t: t == "no migration has run")
    await browser.wait_text(
        "#upgrade-summary", lambda t: t == "upgrading to pool:c: 0 of 1 pools done"
    )
    assert await browser.texts("#upgrades tbody tr .pools") == [
        "pool-1 verifying", "pool-1 rolled_back",
    ]  # fmt: skip
    assert await browser.text("#upgrades tbody tr[data-run='upgrade-1'] .state") == (
        "canary_failed"
    )
    assert HOSTILE in await browser.text("#upgrades tbody tr[data-run='upgrade-1']")
    await browser.wait_text("#events", lambda t: HOSTILE in t)
    await browser.wait_text("#live", lambda t: t == "live")
    await not_pwned(browser)
    await browser.screenshot("admin-dashboard")
    page = await browser.script("return document.documentElement.outerHTML")
    assert ADMIN_TOKEN not in page
    # A phone-sized screen: nothing wider than the screen but the tables' own scrollers.
    await browser.screenshot("admin-dashboard-phone", 390, 844)
    assert await browser.script("return document.documentElement.scrollWidth <= window.innerWidth")
    await browser.sign_out()

    await browser.sign_in(ALICE)
    await browser.wait_text("#bots tbody tr .state", lambda t: t == "running")
    assert await browser.texts("#bots tbody tr td:first-child") == ["alice-1"]
    assert await browser.texts("#pools") == []  # no pools table for a user
    await browser.screenshot("user-dashboard", 1280, 900)
    # Bob's bot page is refused by the API's own ownership check.
    await browser.open("/ui/bots/bob-1")
    assert await browser.text("#error-message") == "not your bot"
    await browser.screenshot("user-other-bot-refused")


async def test_a_user_drives_a_bot_live(harness_factory, browser: Browser):
    h = await harness_factory(**PORTS)
    browser.base = h.base
    # A FreqTrade bot_name is the user's own text: the fake bot prints it into its log.
    await h.provision(ALICE, instanceId="alice-1", config={"bot_name": HOSTILE})
    await h.wait_running("alice-1")

    await browser.sign_in(ALICE)
    await browser.open("/ui/bots/alice-1")
    await browser.wait_text("#bot-state", lambda t: t == "running")
    await browser.wait_text("#log", lambda t: f"fakebot {HOSTILE} on 27000" in t)
    await browser.wait_text("#live", lambda t: t == "live")
    await not_pwned(browser)
    assert await browser.text("#frequi-url") == f"{h.base}/bots/alice-1"
    # The last hour's chart: the controller sampled the bot's memory as its agent reported it.
    await browser.wait_text("#memory-now", lambda t: "MiB (max" in t)
    assert (
        await browser.script("return document.querySelectorAll('#chart-memory circle').length") == 1
    )
    await browser.screenshot("bot-running")

    # No reload from here on: a marker set on this page must survive every change.
    await browser.script("window.stillThisPage = true")
    await browser.click("#do-stop", confirm=False)  # dismissed: nothing happens
    assert (await h.bot("alice-1"))["desired"] == "running"
    await browser.click("#do-stop", confirm=True)
    await browser.wait_text("#bot-state", lambda t: t == "stopped")
    assert (await h.bot("alice-1"))["process"]["state"] == "STOPPED"
    await browser.wait_text("#events", lambda t: "STOPPED" in t)
    await browser.screenshot("bot-stopped")
    await browser.click("#do-start", confirm=True)
    await browser.wait_text("#bot-state", lambda t: t == "running")
    await h.wait_running("alice-1")
    assert await browser.script("return window.stillThisPage") is True

    # The cookie alone does not change anything: the CSRF token is required.
    refused = await browser.async_script(
        """const done = arguments[arguments.length - 1];
        fetch('/api/bots/alice-1/stop', {method: 'POST', credentials: 'same-origin'})
          .then(r => r.json().then(body => done([r.status, body.error])));"""
    )
    assert refused == [403, "missing or wrong CSRF token"]
    assert (await h.bot("alice-1"))["desired"] == "running"

    # Delete, confirmed: back to an empty dashboard.
    await browser.click("#do-delete", confirm=True)
    await browser.wait_text("#bots-summary", lambda t: t.startswith("0 bots"))
    assert await h.bots(ALICE) == {}
