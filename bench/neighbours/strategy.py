"""The misbehaving bot's strategy: the DemoStrategy, trading as its neighbours do, that
misbehaves on cue. The benchmark writes a word into the file `misbehave` in the bot's own
directory (its working directory):

- `leak`: a thread keeps LEAK_MIB more every half second (its pages touched, so they are
  the bot's own memory), up to LEAK_CAP_MIB: bounded, so a run without limits cannot take
  the host's memory;
- `spin`: the strategy's loop (`bot_loop_start`, on the bot's main thread) spins on the
  CPU for as long as the word is there;
- `spin-thread`: a thread of the strategy spins instead, the main thread trades on.

Removing the file calms it (what it kept, it keeps).
"""

from __future__ import annotations

NAME = "NoisyStrategy"
TRIGGER = "misbehave"
LEAK_MIB = 16
LEAK_CAP_MIB = 1536

MIXIN = f'''
    def bot_start(self, **kwargs) -> None:
        """On cue: keep {LEAK_MIB} MiB more every half second (up to {LEAK_CAP_MIB} MiB),
        or spin in a thread."""
        import threading
        import time

        def misbehave() -> None:
            kept = []
            while True:
                word = _cue()
                if word == "leak" and len(kept) * {LEAK_MIB} < {LEAK_CAP_MIB}:
                    chunk = bytearray({LEAK_MIB} << 20)
                    for i in range(0, len(chunk), 4096):
                        chunk[i] = 1
                    kept.append(chunk)
                elif word == "spin-thread":
                    _spin()
                    continue
                time.sleep(0.5)

        threading.Thread(target=misbehave, daemon=True).start()

    def bot_loop_start(self, current_time, **kwargs) -> None:
        """On cue: a busy loop on the bot's main thread, while the cue lasts."""
        while _cue() == "spin":
            _spin()


def _cue() -> str:
    try:
        with open("{TRIGGER}") as f:
            return f.read().strip()
    except OSError:
        return ""


def _spin() -> None:
    """About a tenth of a second of pure CPU."""
    n = 0
    for i in range(1_000_000):
        n += i * i
'''


def noisy_strategy(demo_source: str) -> str:
    """The DemoStrategy's source made into the NoisyStrategy's."""
    renamed = demo_source.replace("class DemoStrategy(", f"class {NAME}(")
    if renamed == demo_source:
        raise ValueError("not the DemoStrategy's source")
    return renamed + MIXIN
