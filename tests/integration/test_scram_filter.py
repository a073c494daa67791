"""chatflow.db.scram_sha256 computes the verifier PostgreSQL itself stores (see pgtest.py for the cluster)."""

from __future__ import annotations

import base64
import re
import secrets
import sys

import pytest
from pgtest import ROOT, psql

sys.path.insert(0, str(ROOT / "collections"))
from ansible.errors import AnsibleFilterError
from ansible_collections.chatflow.db.plugins.filter.scram import scram_sha256, verifier
from ansible_collections.community.postgresql.plugins.module_utils.saslprep import saslprep

VERIFIER = re.compile(r"^SCRAM-SHA-256\$(\d+):([A-Za-z0-9+/=]+)\$([A-Za-z0-9+/=]+):([A-Za-z0-9+/=]+)$")


@pytest.mark.parametrize("password", [secrets.token_urlsafe(24), "pässwörd mit Ümlaut ✓ " + secrets.token_hex(4)])
def test_the_verifier_is_the_one_the_server_computes(cluster, password):
    """The server hashes a clear password with a random salt; with that salt we get the same verifier."""
    role = "chatflow_scram_probe"
    literal = password.replace("'", "''")
    create = f"CREATE ROLE {role} PASSWORD '{literal}'"  # pragma: allowlist secret (generated per run)
    scram = "SET password_encryption = 'scram-sha-256'"  # pragma: allowlist secret (a setting)
    psql(cluster, f"DROP ROLE IF EXISTS {role}; {scram}; {create}", db="postgres")
    stored = psql(cluster, f"SELECT rolpassword FROM pg_authid WHERE rolname = '{role}'", db="postgres")
    iterations, salt, _stored_key, _server_key = VERIFIER.match(stored).groups()
    assert verifier(saslprep(password), base64.b64decode(salt), int(iterations)) == stored
    psql(cluster, f"DROP ROLE {role}", db="postgres")


def test_the_verifier_is_stable_per_password_and_role_and_hides_the_password():
    password = secrets.token_urlsafe(24)
    first = scram_sha256(password, "chatflow_app")
    assert first == scram_sha256(password, "chatflow_app")
    assert first != scram_sha256(password, "chatflow_readonly") != scram_sha256(password + "x", "chatflow_app")
    assert VERIFIER.match(first) and password not in first


@pytest.mark.parametrize(("password", "role"), [("", "chatflow_app"), ("secret-enough", ""), (None, "r")])
def test_bad_input_is_refused(password, role):
    with pytest.raises(AnsibleFilterError, match="scram_sha256"):
        scram_sha256(password, role)
