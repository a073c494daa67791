"""The project's inputs as the roles resolve them by default.

Tests and tools take their expectations from here (roles/chatflow_common's
defaults, where each shared fact is defined once, and a role's own
defaults), rendered by Ansible's own templating with the host's facts and an
inventory's overrides, never from a second copy of a value or a formula, nor
from the host's own configuration.

    >>> shared()["chatflow_database_name"]
    'chatflow_mvp'
    >>> defaults("chatflow_postgresql", facts={"memtotal_mb": 4096, "processor_vcpus": 2})[
    ...     "chatflow_postgresql_shared_buffers_mb"]
    1024
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

import yaml
from ansible.errors import AnsibleError
from ansible.parsing.dataloader import DataLoader
from ansible.template import Templar, trust_as_template

ROOT = Path(__file__).resolve().parent.parent
ROLES = ROOT / "roles"


@cache
def _role_defaults(role: str) -> dict:
    return yaml.safe_load((ROLES / role / "defaults" / "main.yml").read_text(encoding="utf-8")) or {}


def _trusted(value):
    """The value with every string in it marked as a template of ours (Ansible 2.19
    renders only trusted templates)."""
    if isinstance(value, str):
        return trust_as_template(value)
    if isinstance(value, list):
        return [_trusted(v) for v in value]
    if isinstance(value, dict):
        return {k: _trusted(v) for k, v in value.items()}
    return value


def defaults(*roles: str, facts: dict | None = None, overrides: dict | None = None) -> dict:
    """chatflow_common's defaults and those of ``roles``, with ``overrides`` (an
    inventory's values) applied, rendered with ``facts`` as ansible_facts.
    Values that need a play (generated passwords, role_path, playbook_dir)
    are left out."""
    raw: dict = {}
    for role in ("chatflow_common", *roles):
        raw.update(_role_defaults(role))
    raw.update(overrides or {})
    variables = {k: _trusted(v) for k, v in raw.items()}
    variables["ansible_facts"] = facts or {}
    templar = Templar(loader=DataLoader(), variables=variables)
    resolved = {}
    for name, value in variables.items():
        if name == "ansible_facts" or "lookup(" in str(value):
            continue  # a password lookup would generate a secret
        try:
            resolved[name] = templar.template(value)
        except AnsibleError:  # undefined outside a play: role_path, playbook_dir
            continue
    return resolved


def shared(overrides: dict | None = None) -> dict:
    """The shared inputs (roles/chatflow_common) with an inventory's overrides."""
    return defaults(overrides=overrides)


def sandbox_vars() -> dict:
    """The variables sandbox/inventory.yml gives the group chatflow_db (`make sandbox`'s inputs)."""
    sandbox = yaml.safe_load((ROOT / "sandbox" / "inventory.yml").read_text(encoding="utf-8"))
    return sandbox["all"]["children"]["chatflow_db"].get("vars") or {}
