# -*- coding: utf-8 -*-
# Copyright: ChatFlow platform team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Jinja test for passwords: `x is chatflow.db.strong_password`."""  # pragma: allowlist secret

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import hashlib
import string

MIN_LENGTH = 16
# sha256 of the seed documents' example passwords: they are published, so
# they are refused; only their hashes are kept, so git never holds them.
FORBIDDEN_SHA256 = frozenset(
    (
        "d5368df7763dfc92e1b0e624b42ec6337e479ee4f26ae5065b247ad46d8eec2e",  # pragma: allowlist secret
        "6a8d1ef7a3ee0a3569a7960d658caceae0f35d6a0d6d57b33148963535ea21dc",  # pragma: allowlist secret
    )
)


def password_problem(value):
    """Why a password is refused, or None when it is acceptable."""
    if not isinstance(value, str) or value == "":
        return "it is empty"
    if hashlib.sha256(value.encode("utf-8")).hexdigest() in FORBIDDEN_SHA256:
        return "it is one of the seed documents' published example passwords"
    if len(value) < MIN_LENGTH:
        return "it is shorter than %d characters" % MIN_LENGTH
    classes = sum(
        (
            any(c in string.ascii_lowercase for c in value),
            any(c in string.ascii_uppercase for c in value),
            any(c in string.digits for c in value),
            any(c not in string.ascii_letters + string.digits for c in value),
        )
    )
    if classes < 2:
        return "it uses fewer than two kinds of character (lower, upper, digits, symbols)"
    if any(c in value for c in "\n\r\0 "):
        return "it contains whitespace or control characters"
    return None


def strong_password(value):
    return password_problem(value) is None


class TestModule(object):
    def tests(self):
        return {"strong_password": strong_password}
