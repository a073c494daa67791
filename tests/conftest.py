"""Make the project-local collection importable as `ansible_collections.chatflow.db`."""

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "collections"))
sys.path.insert(0, str(ROOT / "roles" / "chatflow_postgresql" / "files"))
