"""A pytest plugin that fails the run when a required suite ran no test or anything skipped.

`make test` sets FTPOOL_REQUIRED_SUITES=unit,integration,e2e/local,e2e/docker, so a suite
that silently collected nothing (or skipped because something was missing) cannot pass CI.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

_passed: list[str] = []
_skipped: list[str] = []


def _in_suite(nodeid: str, suite: str) -> bool:
    """Whether a test belongs to a suite: a folder under tests/, e.g. `unit` or `e2e/docker`."""
    folder = Path(nodeid.split("::", 1)[0]).parent.as_posix()
    return folder == f"tests/{suite}" or folder.startswith(f"tests/{suite}/")


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.skipped:
        _skipped.append(report.nodeid)
    elif report.when == "call" and report.passed:
        _passed.append(report.nodeid)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    required = [s for s in os.environ.get("FTPOOL_REQUIRED_SUITES", "").split(",") if s]
    if not required:
        return
    problems = [
        f"suite {s!r} ran no passing test"
        for s in required
        if not any(_in_suite(nodeid, s) for nodeid in _passed)
    ]
    problems += [f"skipped: {nodeid}" for nodeid in _skipped]
    if problems:
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            reporter.write_line("FTPOOL: required suites incomplete: " + "; ".join(problems))
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
