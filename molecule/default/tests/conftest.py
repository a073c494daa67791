"""Shared fixtures of the testinfra suite.

The suite talks to the container through `docker exec` (testinfra's docker
backend), which is much faster than one Ansible module run per command.  It
runs against the molecule instance by default; point it at the sandbox with
CHATFLOW_TEST_HOST=chatflow-sandbox.
"""

from __future__ import annotations

import os
import shlex

import pytest
import testinfra

HOST_NAME = os.environ.get("CHATFLOW_TEST_HOST", "chatflow-molecule-default")
PROJECT = "/home/agenti/my-mvp-slack"
APP_USER = "agenti"
DB = "chatflow_mvp"


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

    def app_redis(self, *args: str):
        """redis-cli as the app's ACL user, through REDIS_URL."""
        quoted = " ".join(shlex.quote(a) for a in args)
        return self.app(f'redis-cli -u "$REDIS_URL" --no-auth-warning {quoted}')


@pytest.fixture(scope="session")
def sh(host):
    return Shell(host)
