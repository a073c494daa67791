# -*- coding: utf-8 -*-
# Copyright: ChatFlow platform team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Jinja tests for network inputs, without netaddr: `x is chatflow.db.cidr`."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import ipaddress


def cidr(value):
    """True for a network address in CIDR form (host bits zero), v4 or v6."""
    if not isinstance(value, str) or "/" not in value:
        return False
    try:
        ipaddress.ip_network(value, strict=True)
    except ValueError:
        return False
    return True


def ip_address(value):
    """True for a single IPv4 or IPv6 address."""
    try:
        ipaddress.ip_address(str(value))
    except ValueError:
        return False
    return True


class TestModule(object):
    def tests(self):
        return {"cidr": cidr, "ip_address": ip_address}
