"""Fencing in the agent: the pure decision, the loop that acts on it, the reconciler's fence
(every bot stopped, nothing started until the controller's next desired state), and the
bot processes that must be gone."""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

from structlog.testing import capture_logs

from agent import health
from agent.fence import (
    Decision,
    Fence,
    Verdict,
    decide,
    kill_survivors,
    late,
    lost_since,
    narrowed,
    pidfds_of,
    stop_budget,
)
from agent.programs import PRELOADER, ProgramOptions
from agent.reconcile import Reconciler
from common.protocol import Desired
from tests.unit.agent.test_reconcile import FakeSupervisor, fake, pool_dir, python_spec, spec

__all__ = ["fake", "pool_dir"]  # test_reconcile's fixtures, used here too


# -- the decision -----------------------------------------------------------------------


def test_off_connected_or_fenced_already_means_nothing_to_do() -> None:
    assert decide(0, lost_at=0.0, fenced=False, now=1e6) == Decision(Verdict.NONE)
    assert decide(30, lost_at=None, fenced=False, now=1e6) == Decision(Verdict.NONE)
    assert decide(30, lost_at=0.0, fenced=True, now=1e6) == Decision(Verdict.NONE)


def test_cut_off_it_waits_for_the_timeout_then_fences() -> None:
    assert decide(30, lost_at=100.0, fenced=False, now=100.0) == Decision(Verdict.WAIT, 130.0)
    assert decide(30, lost_at=100.0, fenced=False, now=129.9) == Decision(Verdict.WAIT, 130.0)
    assert decide(30, lost_at=100.0, fenced=False, now=130.0) == Decision(Verdict.FENCE)
    assert decide(30, lost_at=100.0, fenced=False, now=500.0) == Decision(Verdict.FENCE)


def test_a_fence_stops_its_bots_within_the_controllers_margin() -> None:
    assert stop_budget(60, 30, 5) == 35  # their stop time and a poll: well inside
    assert stop_budget(10, 30, 5) == 3  # a tuned margin: killed after 3 s, not 35
    assert stop_budget(5, 30, 5) == 1  # at least a second to stop cleanly
    assert stop_budget(0, 30, 5) == 35  # the margin not known (an older controller)


# -- the loop ---------------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def settle() -> None:
    for _ in range(20):
        await asyncio.sleep(0)


@contextlib.asynccontextmanager
async def running_fence() -> AsyncIterator[tuple[Fence, Clock, list[float]]]:
    """A fence of 0.05 s running on a test's clock; when it stopped the bots."""
    clock, fences = Clock(), []

    async def stop_bots() -> int:
        fences.append(clock.now)
        return 2

    fence = Fence(0.05, stop_bots, clock)
    task = asyncio.create_task(fence.run())
    try:
        yield fence, clock, fences
    finally:
        task.cancel()


async def test_the_loop_fences_once_after_the_timeout_and_waits_for_the_controller() -> None:
    async with running_fence() as (fence, clock, fences):
        fence.connected()
        await settle()
        clock.now += 3600  # connected, its pongs coming in: however long, nothing
        fence.heard()
        await asyncio.sleep(0.1)
        assert fences == [] and not fence.fenced

        fence.disconnected()
        await settle()
        assert fences == []  # cut off, not for long enough yet
        clock.now += 0.05
        await asyncio.sleep(0.1)  # the loop's wait ends and it looks again
        assert fences == [clock.now] and fence.fenced

        clock.now += 3600
        fence.disconnected()  # a failed reconnect: fenced already, nothing more to stop
        await asyncio.sleep(0.1)
        assert len(fences) == 1

        fence.connected()  # reached again: fenced until the desired state comes
        await settle()
        assert fence.fenced
        fence.released()
        assert not fence.fenced


async def test_an_agent_that_never_reached_its_controller_fences_too() -> None:
    async with running_fence() as (fence, clock, fences):
        clock.now += 0.05
        await asyncio.sleep(0.1)
        assert fences and fence.fenced


async def test_a_fence_that_failed_is_tried_again() -> None:
    attempts = []

    async def stop_bots() -> int:
        attempts.append(1)
        if len(attempts) == 1:
            raise OSError("supervisord did not answer")
        return 0

    fence = Fence(0.01, stop_bots)
    task = asyncio.create_task(fence.run())
    try:
        for _ in range(300):
            if fence.fenced:
                break
            await asyncio.sleep(0.01)
        assert fence.fenced and len(attempts) == 2
    finally:
        task.cancel()


# -- the reconciler's fence -------------------------------------------------------------


async def test_fencing_stops_every_bot_but_leaves_the_preloader(
    fake: FakeSupervisor, pool_dir: Path
) -> None:
    options = ProgramOptions(log_dir=pool_dir / "logs", run_dir=pool_dir / "run", preloader_wait=0)
    rec = Reconciler(fake, pool_dir, options)  # type: ignore[arg-type]
    bots = [python_spec("b1", 9000), python_spec("b2", 9001),
            python_spec("b3", 9002, run="stopped")]  # fmt: skip
    await rec.apply(Desired(1, bots))
    fake.stopped.clear()

    stopped = await rec.fence()

    assert sorted(stopped) == ["bot-b1", "bot-b2"]
    assert sorted(fake.stopped) == ["bot-b1", "bot-b2"]
    assert [fake.state(b) for b in ("b1", "b2", "b3")] == ["STOPPED"] * 3
    assert fake.groups[PRELOADER].state == "RUNNING"


async def test_fenced_it_applies_nothing_queued_only_the_controllers_next_word(
    fake: FakeSupervisor, pool_dir: Path
) -> None:
    rec = Reconciler(fake, pool_dir, ProgramOptions(log_dir=pool_dir / "logs"))  # type: ignore[arg-type]
    desired = Desired(1, [spec("b1", 9000), spec("b2", 9001)])
    await rec.apply(desired)
    task = asyncio.create_task(rec.run())
    try:
        await rec.fence()
        # A desired state queued before the fence (a retry) is dropped: nothing starts.
        rec._latest = desired
        rec._wakeup.set()
        await asyncio.sleep(0.05)
        assert [fake.state(b) for b in ("b1", "b2")] == ["STOPPED", "STOPPED"]

        fake.started.clear()
        rec.submit(Desired(2, [spec("b1", 9000), spec("b2", 9001, run="stopped")]))
        for _ in range(200):
            if rec.applied_gen == 2:
                break
            await asyncio.sleep(0.01)
        # Back as the controller says: b1 runs again (once), b2 stays stopped.
        assert fake.started == ["bot-b1"]
        assert [fake.state(b) for b in ("b1", "b2")] == ["RUNNING", "STOPPED"]
    finally:
        task.cancel()


# -- the processes ----------------------------------------------------------------------


def test_a_bot_process_that_outlived_its_program_is_killed() -> None:
    survivor = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    try:
        fds = pidfds_of([survivor.pid, gone.pid])
        gone.wait()  # ended (and reaped) before the check: not signalled
        assert kill_survivors(fds) == [survivor.pid]
        assert survivor.wait(timeout=5) < 0
    finally:
        survivor.kill()
        survivor.wait()


def test_narrowed_to_the_pids_supervisord_lists_now() -> None:
    child = subprocess.Popen(["sleep", "60"])
    try:
        before = pidfds_of([os.getpid()])
        after = narrowed(before, [child.pid])  # ours no longer listed, the child new
        assert list(after) == [child.pid]
        kept = narrowed(after, [child.pid])
        assert kept == after  # the same descriptor: the very process taken before
        assert kill_survivors(kept) == [child.pid]
    finally:
        child.kill()
        child.wait()


def test_a_pid_already_gone_is_skipped() -> None:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    assert pidfds_of([child.pid]) == {}
    assert kill_survivors({}) == []


def test_a_fenced_agent_is_healthy_and_says_it_is_fenced() -> None:
    answer = health.status(time.monotonic(), 10.0, connected=False, fenced=True)
    assert answer["ok"] and answer["fenced"] and not answer["controller"]


async def test_a_desired_state_that_arrives_while_a_fence_waits_wins(
    fake: FakeSupervisor, pool_dir: Path
) -> None:
    """The fence was decided, then the agent reconnected and the controller's desired state
    arrived before the fence got the reconciler's lock: nothing is stopped, it is applied."""
    rec = Reconciler(fake, pool_dir, ProgramOptions(log_dir=pool_dir / "logs"))  # type: ignore[arg-type]
    await rec.apply(Desired(1, [spec("b1", 9000)]))
    task = asyncio.create_task(rec.run())
    try:
        await rec._lock.acquire()  # an apply in progress
        fencing = asyncio.create_task(rec.fence(rec.submitted))
        await asyncio.sleep(0.01)
        rec.submit(Desired(2, [spec("b1", 9000)]))
        rec._lock.release()
        assert await fencing is None
        for _ in range(200):
            if rec.applied_gen == 2:
                break
            await asyncio.sleep(0.01)
        assert (rec.applied_gen, rec._fenced, fake.state("b1")) == (2, False, "RUNNING")
    finally:
        task.cancel()


async def test_a_cancelled_fence_leaves_the_agent_unfenced() -> None:
    fence = Fence(1.0, lambda: _none(), clock=lambda: 100.0)
    fence.lost_at = 0.0
    await fence._fence()
    assert not fence.fenced


async def _none() -> None:
    return None


# -- contact, the margin, and an apply under way ------------------------------------------


def test_contact_was_lost_at_the_last_frame_received() -> None:
    assert lost_since(None, 50.0) == 50.0  # never heard: from now
    assert lost_since(40.0, 50.0) == 40.0
    assert lost_since(60.0, 50.0) == 50.0  # never later than now


async def test_a_silent_connection_is_counted_from_its_last_frame_not_its_end() -> None:
    async with running_fence() as (fence, clock, fences):
        fence.connected()
        clock.now += 0.03
        fence.heard()  # a pong
        heard = clock.now
        clock.now += 0.04  # no pong since: the heartbeat gives the connection up
        fence.disconnected()
        assert fence.lost_at == heard
        await settle()
        assert fences == []  # 0.04 of 0.05 s
        clock.now = heard + 0.05
        await asyncio.sleep(0.1)
        assert fences == [heard + 0.05]


def test_a_fence_later_than_the_controllers_wait_is_late() -> None:
    assert not late(10, 5, lost_at=100.0, done_at=115.0)
    assert late(10, 5, lost_at=100.0, done_at=115.1)
    assert not late(10, 0, lost_at=100.0, done_at=1e6)  # the margin not known


async def test_a_late_fence_is_logged_as_an_error() -> None:
    clock = Clock()

    async def slow_stop() -> int:
        clock.now += 20  # bots that took 20 s to stop
        return 1

    fence = Fence(10.0, slow_stop, clock, margin=5.0)
    fence.lost_at = clock.now - 10
    with capture_logs() as logs:
        await fence._fence()
    assert fence.fenced
    [entry] = [e for e in logs if e["event"] == "fence_late"]
    assert (entry["after_s"], entry["log_level"]) == (30.0, "error")


async def test_a_fence_does_not_wait_for_an_apply_under_way(
    fake: FakeSupervisor, pool_dir: Path
) -> None:
    rec = Reconciler(fake, pool_dir, ProgramOptions(log_dir=pool_dir / "logs"))  # type: ignore[arg-type]
    await rec.apply(Desired(1, [spec("b1", 9000)]))
    apply, cancelled = rec.apply, []

    async def stuck_apply(desired: Desired) -> None:
        try:
            await asyncio.Event().wait()  # a preloader that never comes up, say
        except asyncio.CancelledError:
            cancelled.append(desired.gen)
            raise

    rec.apply = stuck_apply  # type: ignore[method-assign]
    task = asyncio.create_task(rec.run())
    try:
        rec.submit(Desired(2, [spec("b1", 9000)]))
        await settle()
        assert rec._lock.locked()  # generation 2 being applied
        # Bounded only so that a fence that waited fails instead of hanging.
        stopped = await asyncio.wait_for(rec.fence(rec.submitted), 10)
        assert (stopped, cancelled, fake.state("b1")) == (["bot-b1"], [2], "STOPPED")
        assert rec.applied_gen == 1
        rec.apply = apply  # type: ignore[method-assign]
        rec.submit(Desired(3, [spec("b1", 9000)]))  # the controller's next word
        for _ in range(200):
            if rec.applied_gen == 3:
                break
            await asyncio.sleep(0.01)
        assert (rec.applied_gen, fake.state("b1")) == (3, "RUNNING")
    finally:
        task.cancel()
