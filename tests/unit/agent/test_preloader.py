"""The preloader's pieces that run in a forked bot, in real processes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from agent.preloader import market_configs, valid, valid_title
from common.settings.bots import encode_markets

ROOT = Path(__file__).parents[3]


def cmdline_after_set_title(title: str, *padding: str) -> tuple[bytes, bytes]:
    """Run set_title(title) in a fresh interpreter; `title` is an expression, so a long
    title need not be on the command line it must fit into."""
    script = (
        "from agent.preloader import set_title\n"
        f"set_title({title})\n"
        "print(open('/proc/self/cmdline', 'rb').read().hex())\n"
        "print(open('/proc/self/comm', 'rb').read().hex())\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script, *padding], cwd=ROOT, check=True,
        capture_output=True, text=True, timeout=30,
    ).stdout.split()  # fmt: skip
    return bytes.fromhex(out[0]), bytes.fromhex(out[1])


def test_a_forked_bot_shows_its_own_title_in_ps_and_top() -> None:
    cmdline, comm = cmdline_after_set_title("'freqtrade bot alice-7'", "x" * 300)
    # ps and docker top read cmdline: the title, the rest of the area blank.
    assert cmdline.rstrip(b"\0") == b"freqtrade bot alice-7"
    assert comm == b"freqtrade bot a\n"  # top: the kernel keeps 15 bytes


def test_a_title_longer_than_the_command_line_is_cut_to_fit() -> None:
    long = "freqtrade bot " + "b" * 2000
    cmdline, _comm = cmdline_after_set_title("'freqtrade bot ' + 'b' * 2000")
    shown = cmdline.rstrip(b"\0")
    assert long.encode().startswith(shown) and 0 < len(shown) < len(long)


REQUEST = {"script": "/bin/freqtrade", "cwd": "/pool/bots/b", "argv": ["freqtrade"], "env": {}}


@pytest.mark.parametrize("title", [None, "freqtrade bot b-1"])
def test_requests_with_or_without_a_title_are_valid(title) -> None:
    assert valid({**REQUEST, "title": title})


@pytest.mark.parametrize("title", [7, "x" * 201, "bot\nname", "bot\x00"])
def test_a_title_that_is_not_short_printable_text_is_refused(title) -> None:
    assert not valid_title(title) and not valid({**REQUEST, "title": title})


def test_the_markets_to_preload_are_read_from_base64url_json_or_skipped() -> None:
    configs = [{"exchange": "binance", "ccxt_config": {"options": {"a": "100% #1"}}}]
    assert market_configs(encode_markets(json.dumps(configs))) == configs
    assert market_configs("") is None
    assert market_configs("!!not base64") is None
    assert market_configs(encode_markets("{not json")) is None
    assert market_configs(encode_markets('{"exchange": "binance"}')) is None  # not a list
