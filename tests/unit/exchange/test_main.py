"""`python -m tests.exchange`: one line once it serves, then it serves until SIGTERM."""

import json
import subprocess
import sys
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]


def test_the_command_prints_its_address_and_serves():
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.exchange", "--port", "0", "--markets", "50", "--seed", "9"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        assert line.startswith("exchange emulator listening on http://127.0.0.1:"), line
        url = line.rsplit(" ", 1)[1].strip()
        assert not url.endswith(":0")
        with urllib.request.urlopen(f"{url}/c/cli/api/v3/exchangeInfo", timeout=5) as r:
            assert len(json.loads(r.read())["symbols"]) == 50
        with urllib.request.urlopen(f"{url}/_emulator/stats", timeout=5) as r:
            assert (
                json.loads(r.read())["clients"]["cli"]["GET /api/v3/exchangeInfo"]["weight"] == 20
            )
    finally:
        process.terminate()
        assert process.wait(10) == 0
