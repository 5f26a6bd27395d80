"""The reliability battery (issue 11) counts its cases: a line at the end of the run says how many were
tried and how many passed."""

from __future__ import annotations

from collections import Counter

import pytest

_OUTCOMES: Counter[str] = Counter()


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if "tests/reliability/" not in report.nodeid.replace("\\", "/"):
        return
    if report.when == "call" or (report.when == "setup" and not report.passed):
        _OUTCOMES[report.outcome] += 1


def pytest_terminal_summary(terminalreporter) -> None:
    if _OUTCOMES:
        tried = sum(_OUTCOMES.values())
        terminalreporter.write_line(
            f"reliability battery: {tried} cases tried, {_OUTCOMES['passed']} passed, "
            f"{_OUTCOMES['failed']} failed, {_OUTCOMES['skipped']} skipped"
        )
