# -*- coding: utf-8 -*-
# Copyright: ChatFlow platform team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filter chatflow.db.scram_sha256: a PostgreSQL SCRAM-SHA-256 verifier computed on the control node."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
name: scram_sha256
short_description: The SCRAM-SHA-256 verifier PostgreSQL stores for a password
version_added: "0.5.0"
description:
  - Computes C(SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>) as PostgreSQL's own
    C(password_encryption = scram-sha-256) would (RFC 5802 / RFC 7677, the password normalised with
    SASLprep as the server does), so that C(CREATE ROLE ... PASSWORD) sends the verifier and the clear
    text never reaches the server, its log (C(log_statement = ddl) logs the statement) or C(pg_stat_activity).
  - The salt is derived from the password and the role name (HMAC-SHA-256), so the same password gives the
    same verifier on every run, and C(community.postgresql.postgresql_user), which compares verifiers, reports a change
    only when the password changed.
positional: _input, role
options:
  _input:
    description: The password in clear text.
    type: str
    required: true
  role:
    description: The role's name (part of the salt).
    type: str
    required: true
  iterations:
    description: PBKDF2 iterations (PostgreSQL's default is 4096).
    type: int
    default: 4096
"""

EXAMPLES = r"""
- name: Create a login role without sending its password
  community.postgresql.postgresql_user:
    name: chatflow_app
    password: "{{ app_password | chatflow.db.scram_sha256('chatflow_app') }}"
  no_log: true
"""

RETURN = r"""
_value:
  description: The verifier, as pg_authid.rolpassword holds it.
  type: str
"""

import base64
import hashlib
import hmac

from ansible.errors import AnsibleFilterError
from ansible.module_utils.common.text.converters import to_bytes, to_text

try:
    from ansible_collections.community.postgresql.plugins.module_utils.saslprep import saslprep
except ImportError:  # pragma: no cover - community.postgresql is a requirement of this project
    saslprep = None


def _b64(data):
    return to_text(base64.b64encode(data))


def scram_sha256(password, role, iterations=4096):
    """The verifier of `password` for `role`: deterministic, and what the server computes with that salt."""
    if not isinstance(password, str) or not password:
        raise AnsibleFilterError("scram_sha256: the password must be a non-empty string")
    if not isinstance(role, str) or not role:
        raise AnsibleFilterError("scram_sha256: the role name must be a non-empty string")
    if int(iterations) < 4096:
        raise AnsibleFilterError("scram_sha256: iterations must be 4096 or more, got %s" % iterations)
    # PostgreSQL normalises with SASLprep and, where that fails, uses the raw bytes.
    try:
        normalised = saslprep(to_text(password)) if saslprep else password
    except Exception:  # a prohibited character: the server falls back to the raw password too
        normalised = password
    salt = hmac.new(to_bytes(password), b"chatflow scram salt:" + to_bytes(role), hashlib.sha256).digest()[:16]
    return verifier(normalised, salt, int(iterations))


def verifier(normalised, salt, iterations):
    """RFC 5802: SaltedPassword = PBKDF2-HMAC-SHA-256; StoredKey = H(HMAC(SP, "Client Key")); ServerKey."""
    salted = hashlib.pbkdf2_hmac("sha256", to_bytes(normalised), salt, iterations)
    client_key = hmac.new(salted, b"Client Key", hashlib.sha256).digest()
    stored_key = hashlib.sha256(client_key).digest()
    server_key = hmac.new(salted, b"Server Key", hashlib.sha256).digest()
    return "SCRAM-SHA-256$%d:%s$%s:%s" % (iterations, _b64(salt), _b64(stored_key), _b64(server_key))


class FilterModule(object):
    def filters(self):
        return {"scram_sha256": scram_sha256}
