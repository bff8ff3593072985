"""The emulator as a process of its own, for the suites, the benchmarks and the demo.

Serving many bots then costs the caller's event loop nothing: `EmulatorProcess.start()`
runs `python -m tests.exchange` and returns once it prints the address it serves; `stop()`
(or leaving a `with` block) ends it.
"""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]


class EmulatorProcess:
    """A running `python -m tests.exchange`."""

    def __init__(self, process: subprocess.Popen[str], url: str) -> None:
        self.process = process
        self.url = url

    @classmethod
    def start(
        cls, host: str = "127.0.0.1", markets: int = 2000, weight_limit: int = 6000
    ) -> EmulatorProcess:
        """weight_limit: Binance's budget per address and minute (0: none); every bot on
        one host shares an address, so benchmarks of many bots lift it."""
        process = subprocess.Popen(
            [sys.executable, "-m", "tests.exchange", "--host", host, "--port", "0",
             "--markets", str(markets), "--weight-limit", str(weight_limit)],
            cwd=ROOT, stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        assert process.stdout is not None
        line = process.stdout.readline()  # it prints its address once it serves
        if "listening on " not in line:
            process.kill()
            process.wait()
            raise RuntimeError(f"the exchange emulator did not start: {line!r}")
        return cls(process, line.rsplit("listening on ", 1)[1].strip())

    def __enter__(self) -> EmulatorProcess:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def stats(self) -> dict[str, Any]:
        with urllib.request.urlopen(f"{self.url}/_emulator/stats", timeout=10) as r:
            return json.loads(r.read())
