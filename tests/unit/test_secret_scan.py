"""The secret scanner of `make lint` (detect-secrets) can fail, and git ignores the generated secrets."""

from __future__ import annotations

import secrets
import shutil
import string
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
HOOK = shutil.which("detect-secrets-hook", path=str(Path(sys.executable).parent)) or shutil.which("detect-secrets-hook")

pytestmark = pytest.mark.skipif(HOOK is None, reason="detect-secrets is installed by `make venv`")


def scan(*paths):
    return subprocess.run([HOOK, *map(str, paths)], capture_output=True, text=True, cwd=ROOT, check=False)


def test_a_planted_secret_fails_the_scan(tmp_path):
    # Built at run time, so that no secret-looking string is kept in git.  The password never starts
    # with "-" (detect-secrets ignores such a value: 2% of token_urlsafe() values did).
    key_id = "AKIA" + "".join(secrets.choice(string.ascii_uppercase + string.digits) for _ in range(16))
    planted = tmp_path / "settings.py"
    password = "Pw" + secrets.token_urlsafe(24)  # pragma: allowlist secret
    planted.write_text(f'aws_access_key_id = "{key_id}"\npassword = "{password}"\n', encoding="utf-8")
    result = scan(planted)
    assert result.returncode != 0
    assert "AWS Access Key" in result.stdout and "Secret Keyword" in result.stdout


def test_the_repository_is_clean():
    files = subprocess.run(["git", "ls-files"], capture_output=True, text=True, cwd=ROOT, check=True).stdout.split()
    result = scan(*files)
    assert result.returncode == 0, result.stdout


def test_generated_secrets_are_ignored_by_git():
    for path in (".secrets/chatflow-sandbox/postgresql_chatflow_app", "sandbox/.secrets/x/ca.crt"):
        assert subprocess.run(["git", "check-ignore", "-q", path], cwd=ROOT, check=False).returncode == 0, path
