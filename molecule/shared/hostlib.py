"""Shared fixtures and helpers of the testinfra suites (molecule/shared and each scenario's tests/).

Every conftest.py of the suites imports them (``from hostlib import *``), so
pytest finds the fixtures and the skip policy's hook; tests import the
helpers from here, never from a conftest.  The suite talks to the container through `docker exec` (testinfra's docker
backend), which is much faster than one Ansible module run per command.  It
runs against the molecule instance by default; point it at the sandbox with
CHATFLOW_TEST_HOST=chatflow-sandbox.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import testinfra
import yaml

HOST_NAME = os.environ.get("CHATFLOW_TEST_HOST", "chatflow-molecule-default")
REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))
from tools.inputs import sandbox_vars, shared  # noqa: E402  (the repository root is on the path only now)
from tools.skip_policy import pytest_runtest_makereport  # noqa: E402, F401  (a pytest hook: skips under CI)


def inventory_vars() -> dict:
    """The variables the scenario's inventory gives the group chatflow_db
    (molecule writes them to group_vars/chatflow_db beside its inventory
    file); for the sandbox, the group's vars in sandbox/inventory.yml."""
    inventory = os.environ.get("MOLECULE_INVENTORY_FILE")
    if not inventory:
        return sandbox_vars()
    group_vars = Path(inventory).parent / "group_vars" / "chatflow_db"
    assert group_vars.is_file(), f"molecule's inventory has no {group_vars}"
    return yaml.safe_load(group_vars.read_text(encoding="utf-8")) or {}


# The expectations come from the inputs the roles were given (the shared
# defaults of roles/chatflow_common with the scenario's inventory on top),
# never from the host's own configuration.
INPUTS = shared(inventory_vars())
PROJECT = INPUTS["chatflow_app_env_project_dir"]
APP_USER = INPUTS["chatflow_app_env_user"]
DB = INPUTS["chatflow_database_name"]


def run_site(inventory: str, *extra: str, env: dict | None = None) -> tuple[dict, subprocess.CompletedProcess]:
    """One run of site.yml from the control node with Ansible's JSON report: (report, process)."""
    environment = dict(
        os.environ,
        ANSIBLE_STDOUT_CALLBACK="ansible.builtin.json",
        ANSIBLE_CONFIG=str(REPO / "ansible.cfg"),
        **(env or {}),
    )
    res = subprocess.run(
        ["ansible-playbook", str(REPO / "site.yml"), "-i", inventory, *extra],
        capture_output=True,
        text=True,
        env=environment,
        cwd=REPO,
        check=False,
        timeout=900,
    )
    assert "{" in res.stdout, f"ansible-playbook printed no report (rc {res.returncode}):\n{res.stderr[-3000:]}"
    # The report is the first JSON document (profile_tasks may print around it).
    report, _end = json.JSONDecoder().raw_decode(res.stdout[res.stdout.index("{") :])
    return report, res


@pytest.fixture(scope="session")
def host():
    return testinfra.get_host(f"docker://{HOST_NAME}")


class Shell:
    """Run SQL and commands on the host as the roles that really use it."""

    def __init__(self, host):
        self.host = host

    def admin_sql(self, sql: str, db: str = DB) -> str:
        """psql as the postgres superuser over the local socket (peer)."""
        cmd = f"runuser -u postgres -- psql -X -v ON_ERROR_STOP=1 -At -d {db} -c {shlex.quote(sql)}"
        return self.host.check_output(cmd)

    def app(self, script: str, directory: str = "backend"):
        """A bash script run as the app's OS user from its directory, with
        .env.database exported, exactly as the backend or its tests would."""
        wrapped = f"cd {PROJECT}/{directory} && set -a && . ./.env.database && set +a && {script}"
        return self.host.run(f"runuser -u {APP_USER} -- bash -c {shlex.quote(wrapped)}")

    def app_sql(self, sql: str, directory: str = "backend"):
        """psql as the app role, through DATABASE_URL."""
        return self.app(f'psql "$DATABASE_URL" -X -v ON_ERROR_STOP=1 -At -c {shlex.quote(sql)}', directory)

    def app_redis(self, *args: str, url: str = "REDIS_URL"):
        """redis-cli as the app's ACL user, through REDIS_URL (or another URL
        of the env file, such as REDIS_CACHE_URL); a command that would block,
        such as MONITOR, gives up after 10 s."""
        quoted = " ".join(shlex.quote(a) for a in args)
        return self.app(f'timeout 10 redis-cli -u "${url}" --no-auth-warning {quoted}')

    def admin_redis(self, *args: str, port: int | None = None):
        """redis-cli as the operators' admin ACL user (password from the control node's
        secrets), on the main Redis or the one on ``port``."""
        quoted = " ".join(shlex.quote(a) for a in args)
        auth = shlex.quote(secret("redis_chatflow_admin"))
        where = f"-p {int(port)} " if port else ""
        return self.host.run(f"REDISCLI_AUTH={auth} redis-cli {where}--user chatflow_admin --no-auth-warning {quoted}")


def secret(name: str) -> str:
    """A generated secret of the host under test, from the control node:
    molecule's ephemeral directory, else the project's .secrets/<host>/."""
    candidates = []
    if os.environ.get("MOLECULE_EPHEMERAL_DIRECTORY"):
        candidates.append(Path(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"]) / "secrets" / name)
    candidates.append(REPO / ".secrets" / HOST_NAME / name)
    for path in candidates:
        if path.exists():
            return path.read_text(encoding="utf-8").split()[0]
    # A secret the run generated must be there: its absence is a failure of
    # the run (or of the fixture), never a reason to skip.
    pytest.fail(f"secret {name} not found in {[str(c) for c in candidates]}")


@pytest.fixture(scope="session")
def sh(host):
    return Shell(host)


# The connection guide's programs (molecule/shared/guide.py), local and remote.
@pytest.fixture(scope="module")
def node_deps():
    """The pinned Node.js packages of tests/node (make node-deps)."""
    subprocess.run(["make", "-s", "-C", str(REPO), "node-deps"], check=True, capture_output=True)


@pytest.fixture(scope="module")
def local_dir(host, tmp_path_factory):
    """What the backend has on the VM: its .env.database in the working directory."""
    workdir = tmp_path_factory.mktemp("guide-local")
    (workdir / ".env.database").write_text(host.file(f"{PROJECT}/backend/.env.database").content_string)
    return workdir
