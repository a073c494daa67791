"""The shared suite (every provisioned host passes it) gets its fixtures and hook from hostlib.py."""

from __future__ import annotations

from hostlib import *  # noqa: F403  (fixtures and a hook: pytest finds them in this module)
