"""No generated secret reaches a log on the host: not after the provisioning, not after a rotation.

Every file of the scenario's secrets directory (the control node's generated passwords) is searched for
in every file under /var/log (the server's, PgBouncer's, Redis's, apt's, ...) and in the journal.  Then
the app's PostgreSQL password is rotated as docs/operations.md says (new secret file, rerun site.yml):
the app logs in with the new one through its env file, and neither the old nor the new value is logged.
Runs last in this scenario: it changes a password.
"""

from __future__ import annotations

import os
import secrets
import subprocess
from pathlib import Path

from hostlib import HOST_NAME, run_site

SECRETS = Path(os.environ.get("MOLECULE_EPHEMERAL_DIRECTORY", "/nonexistent")) / "secrets"
# Each pattern file is written with umask 077 in /run (tmpfs) and removed; grep -a reads binary files too.
SEARCH = (
    "umask 077; cat > /run/chatflow-secrets; "
    "grep -rlaFf /run/chatflow-secrets /var/log --exclude-dir=journal; "
    "journalctl -q --no-pager -o cat 2>/dev/null | grep -qaFf /run/chatflow-secrets && echo journal; "
    "rm -f /run/chatflow-secrets; true"
)


def generated() -> dict[str, str]:
    found = {p.name: p.read_text().split()[0] for p in SECRETS.iterdir() if p.is_file() and p.suffix != ".crt"}
    assert len(found) >= 8, f"the scenario's secrets are missing from {SECRETS}: {sorted(found)}"
    return found


def logged(values: list[str]) -> list[str]:
    """The log files (and 'journal') that hold any of the values."""
    proc = subprocess.run(
        ["docker", "exec", "-i", HOST_NAME, "sh", "-c", SEARCH],
        input="\n".join(values) + "\n",
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    return proc.stdout.split()


def test_no_generated_secret_is_in_any_log():
    assert logged(list(generated().values())) == []


def test_a_rotated_password_works_and_reaches_no_log(sh):
    path = SECRETS / "postgresql_chatflow_app"
    old = path.read_text().split()[0]
    new = secrets.token_urlsafe(24)
    path.write_text(new + "\n")
    report, res = run_site(os.environ["MOLECULE_INVENTORY_FILE"])
    assert res.returncode == 0, res.stderr[-2000:]
    assert any(stats["changed"] for stats in report["stats"].values()), "the rotation changed nothing"
    login = sh.app_sql("SELECT current_user")
    assert login.rc == 0 and login.stdout.strip() == "chatflow_app", login.stderr
    pooled = sh.app('psql "$DATABASE_POOL_URL" -X -At -c "SELECT 1"')
    assert pooled.rc == 0 and pooled.stdout.strip() == "1", pooled.stderr
    assert logged([old, *generated().values()]) == []
