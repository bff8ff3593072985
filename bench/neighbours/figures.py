"""From the samples of one run to figures per phase, and runs side by side as a table."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from bench.tools import percentile

SERIES = ("ping", "status", "agent")
HEADS = {"ping": "proxy /ping ms", "status": "proxy /status ms", "agent": "agent ping ms"}


@dataclass(frozen=True)
class Phase:
    name: str
    start: float  # wall-clock seconds, inclusive
    end: float  # exclusive


@dataclass(frozen=True)
class Stats:
    count: int
    failed: int
    p50: float  # milliseconds, of the answered ones
    p99: float
    max: float


def stats(values: Iterable[float | None]) -> Stats:
    """Seconds (None: failed) as milliseconds by nearest rank."""
    values = list(values)
    ok = [1000 * v for v in values if v is not None]
    return Stats(len(values), len(values) - len(ok), percentile(ok, 50), percentile(ok, 99),
                 max(ok, default=float("nan")))  # fmt: skip


def summarise(
    phases: Sequence[Phase], series: dict[str, Sequence[tuple[float, float | None]]]
) -> dict[str, dict[str, Stats]]:
    """Phase name → series name → its figures, from each series' (time, seconds) samples."""
    return {
        phase.name: {
            name: stats(v for t, v in samples if phase.start <= t < phase.end)
            for name, samples in series.items()
        }
        for phase in phases
    }


def _cell(s: Stats) -> str:
    return f"{s.p50:7.1f}{s.p99:8.1f}{s.max:8.1f}"


def table(runs: dict[str, dict[str, dict[str, Stats]]]) -> list[str]:
    """Lines: each phase with every run's figures (`runs`: limits label → summary)."""
    heads = "".join(f"{HEADS[s]:>23}" for s in SERIES)
    lines = [f"{'phase':<10}{'limits':<7}{heads}{'failed':>8}",
             f"{'':<17}" + f"{'p50':>7}{'p99':>8}{'max':>8}" * len(SERIES)]  # fmt: skip
    phases = next(iter(runs.values()), {})
    for phase in phases:
        for label, summary in runs.items():
            row = summary[phase]
            failed = sum(row[s].failed for s in SERIES)
            cells = "".join(_cell(row[s]) for s in SERIES)
            lines.append(f"{phase:<10}{label:<7}{cells}{failed:>8}")
    return lines
