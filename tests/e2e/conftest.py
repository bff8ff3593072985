"""What both end-to-end suites share: the exchange emulator their trading bots trade against."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.e2e.trading import start_exchange
from tests.exchange import EmulatorProcess


@pytest.fixture(scope="session")
def exchange() -> Iterator[EmulatorProcess]:
    """One emulator process on loopback for the whole run; bots are told apart by client."""
    with start_exchange() as emulator:
        yield emulator
