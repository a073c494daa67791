"""The project's shared inputs as the roles resolve them by default.

Tests and tools take their expectations from here (roles/chatflow_common's
defaults, where each shared fact is defined once), never from a second copy
of the value or from the host's own configuration.  Values that reference
other shared values (``/home/{{ chatflow_app_env_user }}/...``) are rendered
with Jinja; an inventory override is passed in as ``overrides``.

    >>> shared()["chatflow_database_name"]
    'chatflow_mvp'
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

import jinja2
import yaml

ROOT = Path(__file__).resolve().parent.parent
COMMON_DEFAULTS = ROOT / "roles" / "chatflow_common" / "defaults" / "main.yml"


@cache
def _raw() -> dict:
    return yaml.safe_load(COMMON_DEFAULTS.read_text(encoding="utf-8"))


def shared(overrides: dict | None = None) -> dict:
    """Every shared default that renders without Ansible (names, ports, paths),
    with ``overrides`` applied first.  Values that need Ansible (password
    lookups, role_path, playbook_dir) are left out."""
    context = {**_raw(), **(overrides or {})}
    env = jinja2.Environment(undefined=jinja2.StrictUndefined)
    resolved: dict = {}
    for _ in range(4):  # references nest at most a few levels deep
        for name, value in context.items():
            try:
                resolved[name] = _render(env, value, {**context, **resolved})
            except (jinja2.UndefinedError, jinja2.TemplateError):
                continue
    return resolved


def _render(env: jinja2.Environment, value, context: dict):
    if isinstance(value, str) and "{{" in value:
        return env.from_string(value).render(context)
    if isinstance(value, list):
        return [_render(env, item, context) for item in value]
    return value
