"""bench/neighbours/strategy.py: the DemoStrategy that misbehaves on cue, calm without one."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from bench.neighbours.strategy import NAME, TRIGGER, noisy_strategy

DEMO = Path(__file__).resolve().parents[4] / "controller" / "strategies" / "DemoStrategy.py"


def strategy_module() -> dict:
    namespace: dict = {"__name__": NAME}
    exec(compile(noisy_strategy(DEMO.read_text()), f"{NAME}.py", "exec"), namespace)
    return namespace


def test_only_the_demo_strategy_is_made_noisy() -> None:
    with pytest.raises(ValueError):
        noisy_strategy("class Other(IStrategy): pass\n")


def test_its_loop_spins_while_cued_to_and_not_otherwise(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)  # the bot's own directory
    strategy = strategy_module()[NAME]
    loop_start = strategy.bot_loop_start
    started = time.monotonic()
    loop_start(None, current_time=None)  # no cue: calm
    assert time.monotonic() - started < 0.1

    cue = tmp_path / TRIGGER
    cue.write_text("spin\n")
    threading.Timer(0.5, cue.unlink).start()
    started, cpu = time.monotonic(), time.thread_time()
    loop_start(None, current_time=None)
    took = time.monotonic() - started
    assert took >= 0.5 and time.thread_time() - cpu > 0.4 * took  # busy, not sleeping
