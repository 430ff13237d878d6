"""Test tiers and the summary `make test` prints of which tiers ran.

Tiers are pytest markers: unit (no marker), ``chart``, ``integration``, ``cluster``, ``e2e``.
Each tier's own conftest decides whether its prerequisite is present and skips with a one-line
reason when it truly is not; this file only counts outcomes per tier and prints them.
"""

from __future__ import annotations

import logging
from collections import defaultdict

import pytest

# py4j logs "Closing down clientserver connection" from __del__ after pytest closed its streams
logging.getLogger("py4j").setLevel(logging.WARNING)

TIERS = ("unit", "chart", "integration", "cluster", "e2e")

_outcomes: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
_skip_reasons: dict[str, set[str]] = defaultdict(set)


def _tier_of(item: pytest.Item) -> str:
    for tier in TIERS[1:]:
        if item.get_closest_marker(tier):
            return tier
    return "unit"


def pytest_collection_finish(session: pytest.Session) -> None:
    # session.items is what remains after -m/-k deselection: a tier counts only tests that will run
    for item in session.items:
        _outcomes[_tier_of(item)]["collected"] += 1


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):  # type: ignore[no-untyped-def]
    outcome = yield
    report = outcome.get_result()
    tier = _tier_of(item)
    if report.when == "call" or (report.when == "setup" and not report.passed):
        if report.skipped:
            _outcomes[tier]["skipped"] += 1
            reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
            _skip_reasons[tier].add(reason.removeprefix("Skipped: "))
        elif report.failed:
            _outcomes[tier]["failed"] += 1
        else:
            _outcomes[tier]["passed"] += 1
    elif report.when == "teardown" and report.failed:
        _outcomes[tier]["errors"] += 1


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    terminalreporter.section("userstream test tiers")
    for tier in TIERS:
        counts = _outcomes.get(tier)
        if not counts or not counts["collected"]:
            terminalreporter.write_line(f"{tier:<12} not selected")
            continue
        ran = counts["passed"] + counts["failed"]
        if ran == 0 and counts["skipped"]:
            state = "SKIPPED"
        elif ran == 0:
            state = "NOT RUN"
        elif counts["failed"] or counts["errors"]:
            state = "FAILED"
        else:
            state = "RAN"
        terminalreporter.write_line(
            f"{tier:<12} {state:<8} passed={counts['passed']} failed={counts['failed']} "
            f"skipped={counts['skipped']} errors={counts['errors']}"
        )
        for reason in sorted(_skip_reasons.get(tier, ())):
            terminalreporter.write_line(f"{'':<12} skip reason: {reason}")
