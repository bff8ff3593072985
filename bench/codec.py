"""What decoding and validating one agent heartbeat costs the controller, by decoder.

    .venv/bin/python -m bench.codec [--bots 10] [--repeat 30]

Pinned to core 0, it times `common.protocol.decode` on a heartbeat as an agent sends it
(bots RUNNING with memory, CPU, ping, their own memory and nice; the pool's stats), with
and without the pool's market-data and backup figures: the general decoder (msgpack's
`unpackb`, then the hand-written checks: every frame before this benchmark's change), the
one pass (msgspec's typed structs, common/heartbeat_wire.py), and their parts. Each figure
is the best of `--repeat` rounds of `--number` calls, in µs per heartbeat.
"""

from __future__ import annotations

import argparse
import timeit
from collections.abc import Callable

import msgpack

from bench.tools import MEASURED_CPU, pin
from common import heartbeat_wire
from common.protocol import (
    BackupState,
    BotStatus,
    Heartbeat,
    MarketDataStats,
    PoolStats,
    UpstreamStats,
    decode,
    decode_general,
    encode,
)


def heartbeat(bots: int, extras: bool) -> Heartbeat:
    statuses = [
        BotStatus(f"p1234-b{s}", "RUNNING", pid=4000 + s, since=1.7645e9 + s, ping_ok=True,
                  ping_ms=1.3 + s / 10, rss=150_000_000 + s * 4096, cpu=0.5 + s, port_ok=True,
                  uss=70_000_000 + s, nice=0)
        for s in range(bots)
    ]  # fmt: skip
    md = MarketDataStats("RUNNING", 3 << 20, 240, [
        UpstreamStats("binance", "https://api.binance.com", 900, 700, 50, 150, 20, 3, 1, 300, 640,
                      0, 0.0)])  # fmt: skip
    bk = BackupState(True, "", 0, 1.7645e9)
    stats = PoolStats(1_500_000_000, 4_000_000_000, 5.0, oom_guard=True)
    if not extras:
        return Heartbeat(1764500000123456, 7, statuses, stats, "RUNNING")
    return Heartbeat(1764500000123456, 7, statuses, stats, "RUNNING", md, bk)


def best_us(call: Callable[[], object], number: int, repeat: int) -> float:
    return min(timeit.repeat(call, number=number, repeat=repeat)) / number * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bots", type=int, default=10, help="bots in the heartbeat")
    parser.add_argument("--number", type=int, default=2000, help="calls per round")
    parser.add_argument("--repeat", type=int, default=30, help="rounds; the best counts")
    args = parser.parse_args()
    pin(MEASURED_CPU)
    print(f"bench/codec: one heartbeat of {args.bots} bots, core {MEASURED_CPU}, "
          f"best of {args.repeat} x {args.number} calls, µs per heartbeat")  # fmt: skip
    print(f"{'frame':<28}{'bytes':>6}{'general':>9}{'unpackb':>9}{'one pass':>10}"
          f"{'structs':>9}{'saved':>7}")  # fmt: skip
    for name, extras in (("bots + pool", False), ("+ market data + backup", True)):
        data = encode(heartbeat(args.bots, extras))
        assert decode(data) == decode_general(data) == heartbeat(args.bots, extras)
        unpack = lambda d=data: msgpack.unpackb(d, raw=False, strict_map_key=True)  # noqa: E731
        calls = [lambda d=data: decode_general(d), unpack, lambda d=data: decode(d),
                 lambda d=data: heartbeat_wire.decode(d)]  # fmt: skip
        figures = [best_us(call, args.number, args.repeat) for call in calls]
        general, unpackb, one_pass, structs = figures
        print(f"{name:<28}{len(data):>6}{general:>9.1f}{unpackb:>9.1f}{one_pass:>10.1f}"
              f"{structs:>9.1f}{1 - one_pass / general:>7.0%}")  # fmt: skip
    print("general: msgpack.unpackb + hand-written checks; one pass: msgspec structs + the "
          "protocol's classes built from them; structs: msgspec alone")  # fmt: skip


if __name__ == "__main__":
    main()
