"""Role chatflow_tls with the operator's own certificates, run for real on a
temporary directory of this machine (connection local, loopback only): the
files land with the right modes, a rerun changes nothing, a dry run reports a
new certificate without writing it, the key never reaches the output, and an
incomplete set fails before any change with a message naming the variables.
The generated-CA path is exercised by the molecule scenarios."""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
ANSIBLE = shutil.which("ansible-playbook", path=str(Path(sys.executable).parent)) or shutil.which("ansible-playbook")

pytestmark = [
    pytest.mark.skipif(ANSIBLE is None, reason="needs the project's virtualenv (make venv)"),
    pytest.mark.skipif(os.geteuid() != 0, reason="writes root-owned files"),
]


def openssl(*args, cwd):
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


@pytest.fixture(scope="module")
def pems(tmp_path_factory):
    """A CA and a server certificate made with the openssl CLI, as an operator would bring them."""
    d = tmp_path_factory.mktemp("pki")
    openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "30",
            "-subj", "/CN=Operator CA", "-keyout", "ca.key", "-out", "ca.crt", cwd=d)  # fmt: skip
    for name in ("one", "two"):
        openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-subj", f"/CN=db-{name}",
                "-keyout", f"{name}.key", "-out", f"{name}.csr", cwd=d)  # fmt: skip
        openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
                "-days", "30", "-out", f"{name}.crt", cwd=d)  # fmt: skip
    return {p.name: p.read_text() for p in d.iterdir() if p.suffix in (".crt", ".key")}


def run(tmp_path, variables, *extra):
    play = tmp_path / "play.yml"
    play.write_text(
        "- name: Install own certificates\n  hosts: localhost\n  connection: local\n  gather_facts: false\n"
        "  roles: [chatflow_tls]\n"
    )
    varfile = tmp_path / "vars.json"
    settings = {"ansible_python_interpreter": sys.executable, "chatflow_tls_ca_fetch_dir": ""}
    varfile.write_text(json.dumps({**settings, **variables}))
    env = dict(os.environ, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"), ANSIBLE_ROLES_PATH=str(ROOT / "roles"),
               ANSIBLE_COLLECTIONS_PATH=str(ROOT / "collections"), ANSIBLE_LOCALHOST_WARNING="False",
               ANSIBLE_INVENTORY_UNPARSED_WARNING="False")  # fmt: skip
    proc = subprocess.run(
        [ANSIBLE, str(play), "-i", "localhost,", "-e", f"@{varfile}", *extra],
        capture_output=True, text=True, env=env, cwd=tmp_path, check=False,
    )  # fmt: skip
    recap = re.search(r"changed=(\d+)\s+unreachable=\d+\s+failed=(\d+)", proc.stdout)
    return proc, (int(recap.group(1)), int(recap.group(2))) if recap else None


def own(pems, tls_dir, server="one"):
    return {
        "chatflow_tls_dir": str(tls_dir),
        "chatflow_tls_own_ca_cert": pems["ca.crt"],
        "chatflow_tls_own_server_cert": pems[f"{server}.crt"],
        "chatflow_tls_own_server_key": pems[f"{server}.key"],
    }


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_own_certificates_installed_then_unchanged(tmp_path, pems):
    tls = tmp_path / "tls"
    proc, recap = run(tmp_path, own(pems, tls))
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert recap == (5, 0)  # two directories, three files
    assert (tls / "ca.crt").read_text() == pems["ca.crt"] and mode(tls / "ca.crt") == 0o644
    assert (tls / "server.crt").read_text() == pems["one.crt"] and mode(tls / "server.crt") == 0o644
    assert (tls / "private/server.key").read_text() == pems["one.key"] and mode(tls / "private/server.key") == 0o600
    assert mode(tls / "private") == 0o700
    assert not (tls / "private/ca.key").exists(), "no CA of ours is generated beside the operator's"
    key_body = pems["one.key"].splitlines()[1]
    assert key_body not in proc.stdout and key_body not in proc.stderr

    again, recap = run(tmp_path, own(pems, tls))
    assert again.returncode == 0 and recap == (0, 0)


def test_dry_run_reports_a_new_certificate_without_writing_it(tmp_path, pems):
    tls = tmp_path / "tls"
    assert run(tmp_path, own(pems, tls))[0].returncode == 0
    proc, recap = run(tmp_path, own(pems, tls, server="two"), "--check", "--diff")
    assert proc.returncode == 0 and recap == (2, 0), proc.stdout[-3000:]  # certificate and key
    assert (tls / "server.crt").read_text() == pems["one.crt"]
    assert pems["two.key"].splitlines()[1] not in proc.stdout


def test_an_incomplete_set_fails_before_any_change(tmp_path, pems):
    tls = tmp_path / "tls"
    variables = own(pems, tls)
    variables["chatflow_tls_own_server_key"] = ""
    proc, _ = run(tmp_path, variables)
    assert proc.returncode != 0
    assert "chatflow_tls_own_ca_cert, chatflow_tls_own_server_cert and chatflow_tls_own_server_key go together" in (
        proc.stdout + proc.stderr
    )
    assert not tls.exists()
