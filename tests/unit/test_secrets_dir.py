"""Every playbook finds the same generated secrets: site.yml at the root and those under playbooks/.

A playbook under playbooks/ that looked in playbooks/.secrets would generate new passwords there, and a
restore that re-applies the roles would set them on the live roles."""

from __future__ import annotations

import pytest

from tools.inputs import defaults


@pytest.mark.parametrize("playbook_dir", ["/srv/chatflow", "/srv/chatflow/playbooks"])
def test_secrets_dir_is_the_project_roots(playbook_dir):
    rendered = defaults(overrides={"playbook_dir": playbook_dir, "inventory_hostname": "db1"})
    assert rendered["chatflow_common_secrets_dir"] == "/srv/chatflow/.secrets/db1"
