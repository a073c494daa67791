"""No generated secret reaches a log on the host: not after the provisioning, not after a rotation.

Every file of the scenario's secrets directory (the control node's generated passwords) is searched for
in every file under /var/log (the server's, PgBouncer's, Redis's, apt's, ...) and in the journal.  Then
the app's PostgreSQL password is written to sudo's log the way releases before 2026-12 did (a task's
environment on the command line): the next run replaces it (a new secret file) and sets the new one
everywhere; the app logs in with it through its env file, the old one is refused, and no current value is
logged.  Runs last in this scenario: it changes a password.
"""

from __future__ import annotations

import os
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


def plant_sudo_line(value: str) -> None:
    """The line sudo logged for a task with PGPASSWORD in its environment (releases before 2026-12)."""
    line = (
        "agenti : PWD=/home/agenti ; USER=root ; COMMAND=/bin/sh -c echo BECOME-SUCCESS-x ; "
        f"PGPASSWORD={value} /usr/bin/python3 /home/agenti/.ansible/tmp/AnsiballZ_postgresql_ping.py"
    )
    subprocess.run(["docker", "exec", "-i", HOST_NAME, "logger", "-t", "sudo"], input=line, text=True, check=True)


def test_a_password_an_earlier_release_logged_is_replaced_and_the_new_one_reaches_no_log(sh):
    path = SECRETS / "postgresql_chatflow_app"
    old = path.read_text().split()[0]
    others = {name: value for name, value in generated().items() if name != path.name}
    plant_sudo_line(old)
    assert logged([old]) != [], "the planted sudo line is not in the host's logs"
    report, res = run_site(os.environ["MOLECULE_INVENTORY_FILE"])
    assert res.returncode == 0, res.stderr[-2000:]
    new = path.read_text().split()[0]
    assert new != old, "the logged password was not replaced"
    assert {n: v for n, v in generated().items() if n != path.name} == others, "another password was replaced"
    assert any(stats["changed"] for stats in report["stats"].values()), "the new password was not set"
    login = sh.app_sql("SELECT current_user")
    assert login.rc == 0 and login.stdout.strip() == "chatflow_app", login.stderr
    pooled = sh.app('psql "$DATABASE_POOL_URL" -X -At -c "SELECT 1"')
    assert pooled.rc == 0 and pooled.stdout.strip() == "1", pooled.stderr
    # DATABASE_URL with the old password in place of the current one.
    refused = sh.app(f'PGPASSWORD={old} psql "${{DATABASE_URL/:$DB_PASSWORD@/@}}" -X -At -c "SELECT 1"')
    assert refused.rc != 0, "the old password still logs in"
    assert "password authentication failed" in refused.stderr, refused.stderr
    assert logged(list(generated().values())) == []
