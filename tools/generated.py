"""The tail every generator of a committed file shares: --check compares, otherwise write."""

from __future__ import annotations

import difflib
import sys
from pathlib import Path


def check_or_write(path: Path, fresh: str, check: bool, hint: str) -> int:
    """With check: 0 when `path` holds `fresh`, else print the diff and `hint` and return 1; without: write it."""
    if not check:
        path.write_text(fresh, encoding="utf-8")
        print(f"wrote {path}")
        return 0
    current = path.read_text(encoding="utf-8") if path.exists() else ""
    if current == fresh:
        return 0
    sys.stdout.writelines(difflib.unified_diff(current.splitlines(True), fresh.splitlines(True), str(path), "fresh"))
    print(f"{path} is stale: {hint}", file=sys.stderr)
    return 1
