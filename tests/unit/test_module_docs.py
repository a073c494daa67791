"""Every chatflow.db module documents itself in YAML that parses, with every argument it takes.

ansible-doc and ansible-lint only print an error for a module whose DOCUMENTATION does not parse;
this fails the test run instead.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
import yaml

PLUGINS = Path(__file__).resolve().parents[2] / "collections/ansible_collections/chatflow/db/plugins"
MODULES = PLUGINS / "modules"


def blocks(path: Path) -> dict[str, object]:
    tree = ast.parse(path.read_text())
    found = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name):
            name = node.targets[0].id
            if name in ("DOCUMENTATION", "EXAMPLES", "RETURN"):
                found[name] = yaml.safe_load(node.value.value)
    return found


@pytest.mark.parametrize("path", sorted([*MODULES.glob("*.py"), *PLUGINS.glob("filter/*.py")]), ids=lambda p: p.stem)
def test_documentation_examples_and_return_parse(path):
    docs = blocks(path)
    assert set(docs) == {"DOCUMENTATION", "EXAMPLES", "RETURN"}
    if path.parent.name == "modules":
        assert docs["DOCUMENTATION"]["module"] == path.stem
    else:  # a filter plugin documents the filter its FilterModule offers
        assert re.search(r"[\"']%s[\"']\s*:" % re.escape(docs["DOCUMENTATION"]["name"]), path.read_text())
    assert isinstance(docs["EXAMPLES"], list) and all(task.get("name") for task in docs["EXAMPLES"])
    assert isinstance(docs["RETURN"], dict) and docs["RETURN"]


@pytest.mark.parametrize("path", sorted(MODULES.glob("*.py")), ids=lambda p: p.stem)
def test_every_documented_option_is_in_the_argument_spec_and_back(path, monkeypatch):
    monkeypatch.syspath_prepend(str(MODULES.parents[4]))
    namespace: dict = {"__name__": "doc_check"}
    exec(compile(path.read_text(), str(path), "exec"), namespace)
    spec = namespace["argument_spec"]() if callable(namespace.get("argument_spec")) else namespace["ARGUMENT_SPEC"]
    documented = set(blocks(path)["DOCUMENTATION"].get("options", {}))
    own = {name for name in spec if not name.startswith("login_") and name not in COMMON}
    assert own <= documented, f"not documented: {sorted(own - documented)}"
    assert documented <= set(spec), f"documented but not taken: {sorted(documented - set(spec))}"


# community.postgresql's shared connection options, documented by its doc fragment.
COMMON = {"port", "ssl_mode", "ca_cert", "ssl_cert", "ssl_key", "connect_params", "trust_input", "login_host"}
