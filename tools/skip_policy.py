"""Under CI, a skipped test fails the run unless its reason is on the list below.

A test may skip where it truly does not apply (a test of another molecule
scenario); a missing fixture, secret, binary or document is a failure of the
set-up, and CI must say so instead of passing with fewer tests.  Both test
trees' conftest.py import the hook below.
"""

from __future__ import annotations

import os

import pytest

# The only reasons a test may skip under CI: the test belongs to another
# molecule scenario (each scenario's verify runs the shared suite).
ALLOWED_SKIP_REASONS = (
    "runs in the molecule scenario reliability only",
    "runs in the molecule scenario default only",
    "needs the client containers of `security`",
    "needs the client container of scenario `security`",
)


def _reason(report) -> str:
    longrepr = report.longrepr
    if isinstance(longrepr, tuple) and len(longrepr) == 3:
        return str(longrepr[2]).removeprefix("Skipped: ")
    return str(longrepr)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if os.environ.get("CI", "").lower() not in ("1", "true", "yes") or not report.skipped:
        return
    if hasattr(report, "wasxfail"):
        return
    reason = _reason(report)
    if not any(allowed in reason for allowed in ALLOWED_SKIP_REASONS):
        report.outcome = "failed"
        report.longrepr = f"skipped under CI, and the reason is not on tools/skip_policy.py's list: {reason}"
