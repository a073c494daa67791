"""roles/chatflow_database/files/scrub_passwords.py: clear-text passwords out of server logs, in place."""

from __future__ import annotations

import gzip
import os
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "roles/chatflow_database/files/scrub_passwords.py"
LOGGED = (
    "LOG:  statement: CREATE USER \"chatflow_app\" WITH ENCRYPTED PASSWORD 'Zq9-clear''text' CONNECTION LIMIT 50\n"
    "LOG:  statement: ALTER ROLE x PASSWORD 'SCRAM-SHA-256$4096:c2FsdA==$c3Q=:c2s='\n"
    "LOG:  statement: ALTER ROLE y PASSWORD 'md50123456789abcdef0123456789abcdef'\n"
    "LOG:  checkpoint complete\n"
)


def run(*args: str) -> str:
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, check=True).stdout


def test_a_live_log_is_scrubbed_in_place_and_hashes_stay(tmp_path):
    log = tmp_path / "postgresql-15-main.log"
    log.write_text(LOGGED)
    inode = log.stat().st_ino
    with open(log, "a") as server:  # the server keeps its log open and appends
        assert "would scrub 1 password(s)" in run("--check", str(log))
        assert log.read_text() == LOGGED
        assert "scrubbed 1 password(s)" in run(str(log))
        server.write("LOG:  after the scrub\n")
    text = log.read_text()
    assert log.stat().st_ino == inode
    assert "clear" not in text and "PASSWORD '<removed>' CONNECTION LIMIT 50" in text
    assert "SCRAM-SHA-256$4096" in text and "md50123456789abcdef" in text and text.endswith("after the scrub\n")
    assert run(str(log)) == ""  # nothing left: a rerun changes nothing


def test_a_rotated_gz_log_is_scrubbed_with_its_owner_and_mode(tmp_path):
    log = tmp_path / "postgresql-15-main.log.2.gz"
    with gzip.open(log, "wt") as handle:
        handle.write(LOGGED)
    os.chmod(log, 0o640)
    assert "scrubbed 1 password(s)" in run(str(log))
    with gzip.open(log, "rt") as handle:
        assert "clear" not in handle.read()
    assert oct(log.stat().st_mode & 0o777) == "0o640"
    assert [p.name for p in tmp_path.iterdir()] == [log.name]
