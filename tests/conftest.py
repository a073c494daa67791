"""Make the project-local collection importable as `ansible_collections.chatflow.db`;
under CI, a skip that is not allowed fails (tools/skip_policy.py)."""

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "collections"))
sys.path.insert(0, str(ROOT / "roles" / "chatflow_postgresql" / "files"))
sys.path.insert(0, str(ROOT))

from tools.skip_policy import pytest_runtest_makereport  # noqa: E402, F401  (a pytest hook)
