"""The README's screenshot of the dashboard, taken with the browser tests' harness.

    flock /work/suite.lock .venv/bin/python -m tests.browser.screenshot docs/images/dashboard.png

A throw-away controller (local runtime, fake bots, ports from 27100) with five bots of
three users in two pools, one of them stopped; the admin's dashboard at 1100 by 760.
"""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile
from pathlib import Path

from tests.browser.browser import Browser, start_chromium
from tests.support import ADMIN_TOKEN, harnesses, user_token

BOTS = [("alice", "alice-grid"), ("alice", "alice-dca"), ("bob", "bob-trend"),
        ("bob", "bob-scalp"), ("carol", "carol-swing")]  # fmt: skip


async def main(target: Path) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        async with harnesses(Path(tmp)) as start:
            h = await start(POOL_BASE_PORT="27100", MAX_BOTS_PER_CONTAINER="3")
            for user, bot in BOTS:
                await h.provision(user_token(user), instanceId=bot)
            for _, bot in BOTS:
                await h.wait_running(bot)
            await h.call("POST", "/api/bots/bob-scalp/stop")
            os.environ["SE_OFFLINE"] = "true"
            driver = start_chromium(Path(tmp) / "chromium")
            try:
                browser = Browser(driver, target.parent)
                browser.base = h.base
                await browser.sign_in(ADMIN_TOKEN)
                await browser.wait_text("#bots-summary", lambda t: "4 running" in t)
                await browser.wait_text("#events li", lambda t: "STOPPED" in t)
                await browser.screenshot(target.stem, 1100, 760)
            finally:
                driver.quit()
    print(f"wrote {target}")


if __name__ == "__main__":
    asyncio.run(main(Path(sys.argv[1])))
