"""bench/stages.py: each stage is read from the line or event that tells it, after the kill."""

from __future__ import annotations

import json

from bench.stages import from_agent, from_controller, json_lines, stamp

KILL = stamp("2026-01-01T10:00:00+00:00")


def line(event: str, at: str, **fields: object) -> str:
    return json.dumps({"event": event, "timestamp": f"2026-01-01T10:00:{at}Z", **fields})


def test_the_agents_lines_tell_its_stages() -> None:
    text = "\n".join([
        line("process_exit_seen", "00.010", program="bot-b1", pid=5),
        line("process_state", "00.011", program="bot-b1", state="EXITED", pid=0),
        line("process_exit_seen", "00.012", program="bot-b2", pid=6),  # another bot
        "2026-01-01 10:00:00,013 INFO not a JSON line",
        line("bot_restart", "00.050", bot="b1", nonce=1),
        line("process_state", "00.060", program="bot-b1", state="STARTING", pid=7),
        line("bot_answering", "01.500", bot="b1", pid=7),
    ])  # fmt: skip
    found = {k: round(v - KILL, 3) for k, v in from_agent(json_lines(text), "b1", KILL).items()}
    assert found == {"exit seen by agent": 0.010, "restart applied by agent": 0.050,
                     "process started": 0.060, "first ping answered": 1.500}  # fmt: skip
    assert from_agent(json_lines(text), "b1", KILL + 60) == {}  # all before: none of this kill


def test_the_controllers_events_tell_its_stages() -> None:
    events = [
        {"type": "bot_state", "instanceId": "b1", "reason": "RUNNING",
         "timestamp": "2026-01-01T10:00:00.001+00:00"},
        {"type": "bot_state", "instanceId": "b1", "reason": "EXITED",
         "timestamp": "2026-01-01T10:00:00.020+00:00"},
        {"type": "bot_restart", "instanceId": "b1", "reason": "bot_not_running",
         "timestamp": "2026-01-01T10:00:00.030+00:00"},
    ]  # fmt: skip
    found = {k: round(v - KILL, 3) for k, v in from_controller(events, "b1", KILL).items()}
    assert found == {"exit seen by controller": 0.020, "restart sent": 0.030}
