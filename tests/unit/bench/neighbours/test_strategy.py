"""bench/neighbours/strategy.py: the DemoStrategy that misbehaves on cue, calm without one."""

from __future__ import annotations

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
    namespace = strategy_module()
    loop_start = namespace[NAME].bot_loop_start
    cue = tmp_path / TRIGGER
    spins: list[int] = []

    def spin() -> None:  # counted, and the cue taken away at the third
        spins.append(1)
        if len(spins) == 3:
            cue.unlink()

    real_spin, namespace["_spin"] = namespace["_spin"], spin
    loop_start(None, current_time=None)  # no cue: calm
    assert spins == []
    cue.write_text("spin\n")
    loop_start(None, current_time=None)  # spins while the cue lasts, returns once it is gone
    assert len(spins) == 3
    real_spin()  # the real one is plain arithmetic: it returns
