"""The remote snippets of docs/connection_guide.md, run from the client container of this scenario.

The client sits on another network with another address; the snippets run inside its network
namespace with a copy of the backend's `.env.database` edited as the guide says (the server's
address, the CA's path).  The local snippets are tested in molecule/shared/test_connection_guide.py.
"""

from __future__ import annotations

import json
import os
import re

import pytest
import testinfra

from guide import run_program
from test_remote import addresses  # the server's address on the client's network

CLIENT_IN = os.environ["CHATFLOW_TEST_CLIENT_IN"]


@pytest.fixture(scope="module")
def remote_dir(host, local_dir, tmp_path_factory):

    client = testinfra.get_host(f"docker://{CLIENT_IN}")
    networks = {a.network for a in addresses(client)}
    (server,) = [str(a.ip) for a in addresses(host) if a.network in networks]
    workdir = tmp_path_factory.mktemp("guide-remote")
    (workdir / "ca.crt").write_text(host.file("/etc/chatflow/tls/ca.crt").content_string)
    env = (local_dir / ".env.database").read_text()
    edits = {"DB_HOST": server, "REDIS_HOST": server, "DB_SSLROOTCERT": str(workdir / "ca.crt")}
    for key, value in edits.items():
        env = re.sub(rf"^{key}=.*$", f"{key}={value}", env, flags=re.M)
    (workdir / ".env.database").write_text(env)
    return workdir


def test_shell_from_another_host(remote_dir):
    out = run_program("shell-remote", CLIENT_IN, remote_dir)
    assert re.search(r"^\s*t\s*\|\s*TLSv1\.[23]", out, re.M), out
    assert "PONG" in out
    assert out.rstrip().splitlines()[-1] == "OK"  # a cache entry written over TLS to the cache Redis


def test_node_from_another_host(node_deps, remote_dir):
    out = json.loads(run_program("node-remote", CLIENT_IN, remote_dir).splitlines()[-1])
    assert out["postgresql"]["ssl"] is True and out["postgresql"]["version"].startswith("TLSv1.")
    assert out["redis"] == "PONG"


def test_python_from_another_host(remote_dir):
    out = json.loads(run_program("python-remote", CLIENT_IN, remote_dir).splitlines()[-1])
    assert out["postgresql"]["ssl"] is True
    assert out["redis"] is True
