#!/usr/bin/env python3
"""Generate the variables reference of every role from its meta/argument_specs.yml, with aar-doc.

Each `roles/<role>/README.md` has a hand-written part (what the role does, how
to use it) and, between `<!-- BEGIN_ANSIBLE_DOCS -->` and
`<!-- END_ANSIBLE_DOCS -->`, the variables table that aar-doc renders from the
role's argument specs (the same specs Ansible validates the inputs with), in
the layout of tools/templates/role_variables.md.j2. The variables are written
once, in the specs.

    python3 tools/gen_role_docs.py           # rewrite the generated parts (make docs)
    python3 tools/gen_role_docs.py --check   # exit 1 when one is stale (make test)
"""

from __future__ import annotations

import argparse
import difflib
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ROLES = ROOT / "roles"
TEMPLATE = ROOT / "tools" / "templates" / "role_variables.md.j2"
BEGIN, END = "<!-- BEGIN_ANSIBLE_DOCS -->", "<!-- END_ANSIBLE_DOCS -->"


def aar_doc() -> str:
    found = shutil.which("aar-doc", path=str(Path(sys.executable).parent)) or shutil.which("aar-doc")
    if not found:
        sys.exit("gen_role_docs: aar-doc is not installed (make venv installs requirements.txt)")
    return found


def render(role: Path, readme_text: str) -> str:
    """The README with its generated part rendered afresh (in a scratch copy)."""
    with tempfile.TemporaryDirectory(prefix="chatflow-roledoc-") as tmp:
        scratch = Path(tmp) / "README.md"
        scratch.write_text(readme_text, encoding="utf-8")
        proc = subprocess.run(
            [aar_doc(), "--output-template", str(TEMPLATE), "--output-file", str(scratch), str(role), "markdown"],
            capture_output=True,
            text=True,
            check=False,
        )
        if proc.returncode != 0:
            sys.exit(f"gen_role_docs: aar-doc failed on {role.name}:\n{proc.stdout}{proc.stderr}")
        return scratch.read_text(encoding="utf-8")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 when a role's README is stale; write nothing")
    args = parser.parse_args()
    stale = []
    roles = sorted(p.parent.parent for p in ROLES.glob("*/meta/argument_specs.yml"))
    for role in roles:
        readme = role / "README.md"
        current = readme.read_text(encoding="utf-8") if readme.exists() else ""
        if BEGIN not in current.splitlines() or END not in current.splitlines():
            stale.append(f"{readme.relative_to(ROOT)}: no {BEGIN} ... {END} block for the generated reference")
            continue
        fresh = render(role, current)
        if fresh == current:
            continue
        if args.check:
            diff = difflib.unified_diff(current.splitlines(), fresh.splitlines(), "committed", "generated", lineterm="")
            stale.append(f"{readme.relative_to(ROOT)} is stale:\n" + "\n".join(list(diff)[:40]))
        else:
            readme.write_text(fresh, encoding="utf-8")
            print(f"wrote {readme.relative_to(ROOT)}")
    if stale:
        print("\n".join(stale), file=sys.stderr)
        print("Run `make docs` and commit the roles' README.md files.", file=sys.stderr)
        return 1
    if args.check:
        print(f"the variables reference of {len(roles)} roles is up to date")
    return 0


if __name__ == "__main__":
    sys.exit(main())
