"""A Selenium driver for tests that also run a controller on their event loop.

WebDriver calls block, so each runs in a thread: the controller under test keeps serving
while the browser waits for it. Waits are bounded; they fail the test when they run out.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

from selenium import webdriver
from selenium.common.exceptions import TimeoutException
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import WebDriverWait

WAIT = 30
CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"


def start_chromium(profile: Path) -> WebDriver:
    """Debian's headless chromium through its chromedriver, with a throw-away profile.

    Selenium Manager is never asked for anything: both paths are given (and the tests set
    SE_OFFLINE), so nothing is downloaded.
    """
    options = Options()
    options.binary_location = CHROMIUM
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})  # console, for failures
    for arg in (
        "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
        "--window-size=1280,900", "--no-first-run", "--disable-extensions",
        f"--user-data-dir={profile}",
    ):  # fmt: skip
        options.add_argument(arg)
    return webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)


class Browser:
    def __init__(self, driver: WebDriver, shots: Path) -> None:
        self.driver = driver
        self.shots = shots
        self.base = ""

    async def _run(self, fn: Callable[..., Any], *args: Any) -> Any:
        return await asyncio.to_thread(fn, *args)

    async def open(self, path: str) -> None:
        await self._run(self.driver.get, self.base + path)

    async def open_url(self, url: str) -> None:
        """A page of another site than the controller's."""
        await self._run(self.driver.get, url)

    async def follow_to_new_window(self, css: str) -> str:
        """Click a link that opens a new window and go on in it; its address once loaded."""

        def follow() -> str:
            handles = set(self.driver.window_handles)
            self.driver.find_element(By.CSS_SELECTOR, css).click()
            WebDriverWait(self.driver, WAIT).until(lambda d: len(d.window_handles) > len(handles))
            new = next(h for h in self.driver.window_handles if h not in handles)
            self.driver.switch_to.window(new)
            WebDriverWait(self.driver, WAIT).until(
                lambda d: (
                    d.execute_script("return document.readyState") == "complete"
                    and d.current_url != "about:blank"
                )
            )
            return self.driver.current_url

        return await self._run(follow)

    async def sign_in(self, token: str) -> None:
        def sign_in() -> None:
            self.driver.get(self.base + "/ui/login")
            self.driver.find_element(By.ID, "token").send_keys(token)
            self.driver.find_element(By.ID, "sign-in").click()
            WebDriverWait(self.driver, WAIT).until(lambda d: d.find_elements(By.ID, "logout"))

        await self._run(sign_in)

    async def sign_out(self) -> None:
        def sign_out() -> None:
            self.driver.find_element(By.ID, "logout").click()
            WebDriverWait(self.driver, WAIT).until(lambda d: d.find_elements(By.ID, "token"))

        await self._run(sign_out)

    # Texts are read in the page in one step: the page redraws its tables as it updates,
    # so an element found a moment earlier may be gone by the time it is read.
    def _texts(self, css: str) -> list[str]:
        return self.driver.execute_script(
            "return [...document.querySelectorAll(arguments[0])].map(e => e.innerText)", css
        )

    async def text(self, css: str) -> str:
        texts = await self._run(self._texts, css)
        assert texts, f"no {css} on {self.driver.current_url}"
        return texts[0]

    async def texts(self, css: str) -> list[str]:
        return await self._run(self._texts, css)

    async def wait_text(self, css: str, check: Callable[[str], bool]) -> str:
        """Until the first element matching `css` has a text that passes `check`."""

        seen: list[str] = []

        def passes(_driver: WebDriver) -> str | None:
            seen[:] = self._texts(css)[:1]
            return seen[0] if seen and check(seen[0]) else None

        try:
            return await self._run(lambda: WebDriverWait(self.driver, WAIT).until(passes))
        except TimeoutException:
            await self.screenshot("failed-wait")
            logs = await self._run(self.driver.get_log, "browser")
            raise AssertionError(
                f"{css}: {seen or 'no such element'} on {self.driver.current_url}; console: {logs}"
            ) from None

    async def click(self, css: str, confirm: bool | None = None) -> None:
        """Click; if a confirmation dialog is expected, accept (True) or dismiss (False) it."""

        def click() -> None:
            self.driver.find_element(By.CSS_SELECTOR, css).click()
            if confirm is not None:
                alert = WebDriverWait(self.driver, WAIT).until(lambda d: d.switch_to.alert)
                alert.accept() if confirm else alert.dismiss()

        await self._run(click)

    async def script(self, source: str, *args: Any) -> Any:
        return await self._run(self.driver.execute_script, source, *args)

    async def async_script(self, source: str, *args: Any) -> Any:
        return await self._run(self.driver.execute_async_script, source, *args)

    async def screenshot(self, name: str, width: int | None = None, height: int = 900) -> Path:
        """Save a screenshot; with a width, of a window that size (and it stays so)."""
        path = self.shots / f"{name}.png"

        def shoot() -> None:
            if width is not None:
                self.driver.set_window_size(width, height)
            self.driver.save_screenshot(str(path))

        await self._run(shoot)
        return path
