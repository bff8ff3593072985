"""The migration log, `BOT_BASE_DIR/.migration-log.json`: every bot's migrations and
rollbacks, their steps, timings and outcome (the seed's file name, our content).

The file is rewritten whole (temporary file, fsync, rename) after every step, so a
crash leaves the previous complete version, never a torn one. A run records itself here:
its start (which must be saved: nothing has changed yet), each step, and its outcome.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import time
from collections.abc import AsyncIterator
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import structlog

from controller.errors import FtpoolError
from controller.moves.transfer import StepFailed

log = structlog.get_logger("controller.migration")
KEEP_RUNS = 20  # runs kept per bot; the oldest go first
# A run's steps in the order controller/migration/run.py takes them (the bot is stopped
# before its files are backed up); `ftpool migrate --dry-run --verbose` prints its plan
# from these.
MIGRATION_STEPS = ("stop", "backup", "allocate", "start", "verify", "cleanup")
RESUME_STEPS = ("verify", "cleanup")  # a run cut short after its bot reached its pool


@dataclass(slots=True)
class Step:
    name: str
    started_at: float
    ms: float = 0.0
    ok: bool | None = None  # None while it runs
    detail: str = ""


_STEP_FIELDS = frozenset(f.name for f in fields(Step))


@dataclass(slots=True)
class Run:
    """One migration (legacy → pool) or rollback (pool → legacy) of one bot."""

    id: str
    bot: str
    user: str
    kind: str  # "migrate" or "rollback"
    source: str  # "legacy-container", "legacy-pool" or "pool"
    started_at: float = field(default_factory=time.time)
    finished_at: float | None = None
    outcome: str = "in_progress"  # migrated, rolled_back, failed, skipped
    reason: str = ""
    source_container: str = ""
    from_pool: str | None = None
    to_pool: str | None = None
    port: int | None = None
    backup: str = ""
    was_running: bool | None = None  # a legacy container's state before the run stopped it
    steps: list[Step] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> Run:
        """A run as saved; fields this version does not know are dropped."""
        known = {f.name for f in fields(cls)} - {"steps"}
        steps = [Step(**{k: v for k, v in s.items() if k in _STEP_FIELDS})
                 for s in raw.get("steps", [])]  # fmt: skip
        return cls(**{k: v for k, v in raw.items() if k in known}, steps=steps)


class MigrationLog:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.runs: list[Run] = []

    def load(self) -> None:
        try:
            raw = json.loads(self.path.read_text())
        except FileNotFoundError:
            return
        except (OSError, ValueError) as exc:
            self._set_aside(str(exc))
            return
        try:
            self.runs = [Run.from_json(r) for r in raw.get("runs", [])]
        except (TypeError, AttributeError) as exc:
            self._set_aside(f"runs cannot be read: {exc}")

    def _set_aside(self, error: str) -> None:
        """Never overwritten: set aside, so the operator can read what it held."""
        aside = self.path.with_name(f"{self.path.name}.unreadable-{int(time.time())}")
        os.replace(self.path, aside)
        self.runs = []
        log.error("migration_log_unreadable", path=str(aside), error=error)

    def dump(self) -> str:
        """The whole log as it is now (taken where the runs change: on the event loop)."""
        return json.dumps({"version": 1, "runs": [r.to_json() for r in self.runs]}, indent=1)

    def write(self, data: str) -> None:
        """Replace the file by `data`, durably; it blocks (fsync), so never on the loop."""
        tmp = self.path.with_name(f".{self.path.name}.tmp")
        with open(tmp, "w") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)

    def save(self) -> None:
        self.write(self.dump())

    def add(self, run: Run) -> Run:
        """A new run, in memory; the bot's oldest runs past KEEP_RUNS go."""
        self.runs.append(run)
        mine = [r for r in self.runs if r.bot == run.bot]
        for old in mine[:-KEEP_RUNS]:
            self.runs.remove(old)
        return run

    def begin(self, run: Run) -> Run:
        self.add(run)
        self.save()
        return run

    def latest(self, bot_id: str) -> Run | None:
        return next((r for r in reversed(self.runs) if r.bot == bot_id), None)

    def conclude(self, run: Run, outcome: str, reason: str = "") -> Run:
        """A run's outcome, in memory."""
        run.outcome, run.reason, run.finished_at = outcome, reason, time.time()
        log.info("migration_finished", run=run.id, bot=run.bot, kind=run.kind,
                 outcome=outcome, reason=reason)  # fmt: skip
        return run

    def finish(self, run: Run, outcome: str, reason: str = "") -> Run:
        self.conclude(run, outcome, reason)
        self.save()
        return run

    # -- a run recording itself (on the event loop; the file is written in a thread) -----

    async def start_run(self, run: Run) -> Run:
        """A new run, saved before anything changes: a log that cannot be written stops
        the run here, while there is nothing to undo."""
        self.add(run)
        await asyncio.to_thread(self.write, self.dump())
        return run

    async def end_run(self, run: Run, outcome: str, reason: str = "") -> Run:
        self.conclude(run, outcome, reason)
        await self.save_quietly()
        return run

    async def save_quietly(self) -> None:
        """Write the log in a worker thread (it fsyncs). Once a run has begun, a write that
        fails is logged and the run goes on: the log never replaces a step's failure nor
        cancels the rollback that follows it, and the next write saves it all."""
        data = self.dump()
        try:
            await asyncio.to_thread(self.write, data)
        except OSError as exc:
            log.error("migration_log_not_saved", path=str(self.path), error=str(exc))

    @contextlib.asynccontextmanager
    async def step(self, run: Run, name: str) -> AsyncIterator[Step]:
        """One step of a run, timed and saved; any failure of ours (or of the disk) in it
        becomes StepFailed, which says what went wrong."""
        step = Step(name, time.time())
        run.steps.append(step)
        started = time.monotonic()
        try:
            yield step
        except StepFailed as exc:
            step.ok, step.detail = False, str(exc)
            raise
        except (FtpoolError, OSError, ValueError) as exc:
            step.ok, step.detail = False, f"{type(exc).__name__}: {exc}"
            raise StepFailed(f"{name} failed: {exc}") from exc
        else:
            step.ok = True
        finally:
            step.ms = round((time.monotonic() - started) * 1000, 1)
            await self.save_quietly()
            log.info("migration_step", run=run.id, bot=run.bot, step=name, ok=step.ok, ms=step.ms)
