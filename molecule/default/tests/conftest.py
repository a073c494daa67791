"""Scenario default's own tests get the shared fixtures and the skip policy's hook (molecule/shared/hostlib.py)."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "shared"))
from hostlib import *  # noqa: F403  (fixtures and a hook: pytest finds them in this module)


def pytest_collection_modifyitems(items):
    """The fingerprint's checks first, right after the idempotence step recorded the host: the shared
    suite's tests write to the database, so after them the record would need a complete run first."""
    items.sort(key=lambda item: item.path.name != "test_fingerprint.py")
