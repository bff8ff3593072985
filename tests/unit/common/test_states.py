"""States as enums: the same words on the wire as before, and groupings that agree."""

from __future__ import annotations

from typing import Any, cast

import msgpack

from common.protocol import BotSpec, BotStatus, Desired, Heartbeat, PoolStats, decode, encode
from common.states import (
    ACTIVE,
    AT_REST,
    DIED,
    SETTLED,
    STOPPED,
    TRANSITIONAL,
    BotStatusWord,
    ProcessState,
    RunState,
)


def test_each_state_is_its_wire_word() -> None:
    assert [s.value for s in ProcessState] == [
        "STOPPED", "STARTING", "RUNNING", "BACKOFF", "STOPPING", "EXITED", "FATAL", "UNKNOWN",
        "ABSENT",
    ]  # fmt: skip
    assert [s.value for s in RunState] == ["running", "stopped", "held"]
    assert ProcessState.RUNNING == "RUNNING" and RunState.HELD == "held"


def test_every_process_state_is_active_or_settled_or_absent_and_never_both() -> None:
    assert ACTIVE | SETTLED | {ProcessState.ABSENT} == set(ProcessState)
    assert not ACTIVE & SETTLED and ProcessState.ABSENT not in ACTIVE | SETTLED
    assert ACTIVE - {ProcessState.RUNNING} == TRANSITIONAL
    assert DIED <= SETTLED and STOPPED <= SETTLED
    assert {ProcessState.ABSENT} | STOPPED == AT_REST


def test_a_bots_status_word_is_its_process_state_in_lower_case() -> None:
    for state in ProcessState:
        assert BotStatusWord.of_process(state) == state.value.lower()


def test_frames_carry_the_same_bytes_as_with_plain_strings() -> None:
    """An agent or controller of the previous version, which knew only the strings, reads
    and writes the very same frames."""
    exited: Any = "EXITED"
    with_enums = Heartbeat(3, 2, [BotStatus("b1", ProcessState.EXITED, exit_status=1)],
                           PoolStats(), preloader=ProcessState.RUNNING)  # fmt: skip
    with_strings = Heartbeat(3, 2, [BotStatus("b1", exited, exit_status=1)], PoolStats(),
                             preloader=cast(Any, "RUNNING"))  # fmt: skip
    assert encode(with_enums) == encode(with_strings)
    spec = BotSpec("b1", 9000, ["freqtrade"], {}, run=RunState.HELD)
    old_spec = BotSpec("b1", 9000, ["freqtrade"], {}, run=cast(Any, "held"))
    assert encode(Desired(1, [spec])) == encode(Desired(1, [old_spec]))


def test_decoding_gives_the_states_themselves() -> None:
    # As an agent of the previous version writes it: plain strings.
    old = {"t": "heartbeat", "v": 1, "seq": 1, "gen": 1, "preloader": "ABSENT",
           "pool": {"mem_used": 0, "mem_limit": 0, "cpu": 0.0},
           "bots": [{"id": "b1", "state": "FATAL", "pid": 0, "since": 1.0, "rss": 0}]}  # fmt: skip
    hb = decode(msgpack.packb(old))
    assert isinstance(hb, Heartbeat)
    assert hb.bots[0].state is ProcessState.FATAL and hb.preloader is ProcessState.ABSENT
    spec = {"id": "b1", "port": 9000, "command": ["x"], "files": {}, "run": "stopped", "nonce": 0}
    frame = {"t": "desired", "v": 1, "gen": 1, "bots": [spec], "purge": [], "launch": "exec",
             "preloader_nonce": 0}  # fmt: skip
    desired = decode(msgpack.packb(frame))
    assert isinstance(desired, Desired) and desired.bots[0].run is RunState.STOPPED
