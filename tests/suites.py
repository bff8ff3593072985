"""A pytest plugin that fails the run when a required suite ran no test or anything skipped.

`make test` sets FTPOOL_REQUIRED_SUITES=unit,integration,e2e, so a suite that silently
collected nothing (or skipped because something was missing) cannot pass CI.
"""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path

import pytest

_passed: Counter[str] = Counter()
_skipped: list[str] = []


def _suite(nodeid: str) -> str:
    parts = Path(nodeid.split("::", 1)[0]).parts
    return parts[1] if len(parts) > 2 and parts[0] == "tests" else "other"


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.skipped:
        _skipped.append(report.nodeid)
    elif report.when == "call" and report.passed:
        _passed[_suite(report.nodeid)] += 1


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    required = [s for s in os.environ.get("FTPOOL_REQUIRED_SUITES", "").split(",") if s]
    if not required:
        return
    problems = [f"suite {s!r} ran no passing test" for s in required if not _passed[s]]
    problems += [f"skipped: {nodeid}" for nodeid in _skipped]
    if problems:
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            reporter.write_line("FTPOOL: required suites incomplete: " + "; ".join(problems))
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
