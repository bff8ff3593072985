"""Browser fixtures: Debian's headless chromium driven by Selenium through /usr/bin/chromedriver.

Nothing is downloaded: the browser and its driver come from apt (`make chromium`), and
Selenium Manager is told to stay offline. A missing browser fails the tests, never skips
them. Screenshots go to artifacts/browser/<test>/ in the checkout (ignored by git).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.browser.browser import Browser, start_chromium
from tests.integration.conftest import assert_nothing_left

ARTIFACTS = Path(__file__).parents[2] / "artifacts" / "browser"


@pytest.fixture(autouse=True)
def _no_leftover_processes(tmp_path: Path) -> Iterator[None]:
    yield
    assert_nothing_left(tmp_path)


@pytest.fixture
def browser(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Browser]:
    monkeypatch.setenv("SE_OFFLINE", "true")
    driver = start_chromium(tmp_path / "chromium")
    shots = ARTIFACTS / request.node.name
    shots.mkdir(parents=True, exist_ok=True)
    try:
        yield Browser(driver, shots)
    finally:
        driver.quit()
