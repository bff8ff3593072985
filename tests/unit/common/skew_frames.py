"""One frame of each kind as agents and the controller send them, for the version-skew test.

`python -m tests.unit.common.skew_frames` prints them encoded, as JSON of hex strings. Run
with another version's `common/` first on the path, its output is that version's frames:
frames_051ba9a.json holds those of the controller and agents before heartbeats were decoded
with msgspec (main at 051ba9a), recorded with

    git archive 051ba9a common | tar -x -C /tmp/old
    cd /tmp/old && PYTHONPATH=/tmp/old:$REPO $REPO/.venv/bin/python \
        -m tests.unit.common.skew_frames > $REPO/tests/unit/common/frames_051ba9a.json
"""

from __future__ import annotations

import json
import sys
from typing import Any

from common import protocol as p


def _bots() -> list[p.BotStatus]:
    running = [
        p.BotStatus(f"u7-bot-{i}", "RUNNING", pid=4100 + i, since=1764500000.25 + i,
                    ping_ok=True, ping_ms=1.5 + i, rss=160_000_000 + i, cpu=0.75 * i,
                    port_ok=True, uss=70_000_000 + i, nice=19 if i == 3 else 0)
        for i in range(7)
    ]  # fmt: skip
    return [
        *running,
        p.BotStatus("u7-bot-7", "STARTING", pid=4107, since=1764500100.0, ping_ok=False,
                    ping_ms=None, rss=40_000_000, cpu=12.5, port_ok=None, uss=30_000_000,
                    nice=0),
        p.BotStatus("u7-bot-8", "EXITED", since=1764500050.5, exit_status=1),
        p.BotStatus("u7-bot-9", "ABSENT"),
    ]  # fmt: skip


def _market_data() -> p.MarketDataStats:
    return p.MarketDataStats(
        "RUNNING", 3 << 20, 240,
        [p.UpstreamStats("binance", "https://api.binance.com", 900, 700, 50, 150, 20, 3, 1,
                         300, 640, 0, 0.0),
         p.UpstreamStats("kraken", "other", 10, 0, 0, 10, 10, 0, 0, 0, 0, 1, 7.5)],
    )  # fmt: skip


def messages() -> dict[str, Any]:
    pool = p.PoolStats(3_000_000_000, 8_000_000_000, 42.5, oom_guard=True)
    return {
        "heartbeat": p.Heartbeat(1764500200123456, 12, _bots(), pool, "RUNNING"),
        "heartbeat_market_data_backup": p.Heartbeat(
            8,
            12,
            _bots()[:2],
            pool,
            "RUNNING",
            _market_data(),
            p.BackupState(False, "No space left on device", 2, 1764400000.0),
        ),
        "heartbeat_empty": p.Heartbeat(1, 0, [], p.PoolStats()),
        "hello": p.Hello(
            "pool-3", "t" * 43, "0.1.0", 10, 9000, _bots()[:3], ["held", "backup"], "2025.9"
        ),
        "desired": p.Desired(
            12,
            [
                p.BotSpec(
                    "u7-bot-0",
                    9000,
                    ["freqtrade", "trade", "--config", "config.json"],
                    {"config.json": b'{"a": 1}', "user_data/strategies/S.py": b"class S: ...\n"},
                    "running",
                    3,
                ),
                p.BotSpec("u7-bot-1", 9001, ["freqtrade", "trade"], {}, "held", 0),
            ],
            purge=["u7-gone"],
            launch="preload",
            preloader_nonce=1,
        ),
        "log_request": p.LogRequest(5, "u7-bot-0", 65536),
        "log_response": p.LogResponse(5, b"2026-11-30 12:00:00 - freqtrade - INFO - ok\n"),
        "restore_request": p.RestoreRequest(
            6, "u7-bot-0", "tradesv3.sqlite", "20261130T120000.000001Z"
        ),
        "restore_response": p.RestoreResponse(6, "", "tradesv3.sqlite.before-restore-x"),
    }


if __name__ == "__main__":
    frames = {name: p.encode(msg).hex() for name, msg in messages().items()}
    json.dump(frames, sys.stdout, indent=1, sort_keys=True)
    sys.stdout.write("\n")
