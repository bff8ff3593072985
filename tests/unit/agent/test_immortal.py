"""PRELOAD_IMMORTAL: where the preloader makes its objects immortal, and what it says."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from agent.immortal import decide, this_interpreter, unsupported

ROOT = Path(__file__).parents[3]


@pytest.mark.parametrize("version", [(3, 12), (3, 13)])
def test_cpython_3_12_and_3_13_on_64_bits_are_supported(version: tuple[int, int]) -> None:
    assert unsupported(version, 8, gil_disabled=False, ref_debug=False) == ""


@pytest.mark.parametrize(
    ("facts", "reason"),
    [
        (((3, 11), 8, False, False), "Python 3.11 (immortal objects are made on 3.12, 3.13 only)"),
        (((3, 14), 8, False, False), "Python 3.14 (immortal objects are made on 3.12, 3.13 only)"),
        (((3, 13), 4, False, False), "a 32-bit build"),
        (((3, 13), 8, True, False), "a free-threaded build"),
        (((3, 13), 8, False, True), "a debug build"),
    ],
)
def test_other_layouts_of_the_reference_count_are_left_alone(facts: tuple, reason: str) -> None:
    assert unsupported(*facts) == reason


def test_auto_and_on_make_objects_immortal_where_supported() -> None:
    assert decide("auto", "") == (True, "")
    assert decide("on", "") == (True, "")


def test_off_wins_and_on_never_overrides_an_unsupported_interpreter() -> None:
    assert decide("off", "") == (False, "immortal objects off (PRELOAD_IMMORTAL=off)")
    assert decide("auto", "Python 3.11") == (False, "immortal objects skipped: Python 3.11")
    assert decide("on", "a debug build") == (
        False, "immortal objects skipped despite PRELOAD_IMMORTAL=on: a debug build",
    )  # fmt: skip


def test_a_preloader_on_this_python_logs_what_it_did_and_still_freezes() -> None:
    script = (
        "import gc, sys\n"
        "from agent.preloader import preload\n"
        "preload(['json'], None, sys.argv[1])\n"
        "print(gc.get_freeze_count() > 0)\n"
    )
    for setting, said in [("off", "immortal objects off"), ("auto", this_interpreter())]:
        run = subprocess.run(
            [sys.executable, "-c", script, setting], cwd=ROOT, check=True,
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert run.stdout.strip() == "True"
        assert said in run.stderr
