"""The runnable snippets of docs/connection_guide.md and how to run them (see test_connection_guide.py)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from hostlib import REPO

GUIDE = REPO / "docs" / "connection_guide.md"
NODE_DIR = REPO / ".state" / "node"
SNIPPET = re.compile(r"<!-- snippet: (\S+) (local|remote) -->\n```(\w+)\n(.*?)^```", re.S | re.M)
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.S | re.M)
TEXT = GUIDE.read_text(encoding="utf-8")
SNIPPETS = {name: (where, lang, code) for name, where, lang, code in SNIPPET.findall(TEXT)}


def fences() -> list[tuple[str, str]]:
    return FENCE.findall(TEXT)


# The snippets the tests below run, by name: a new snippet needs a test here.
TESTED = {
    *("node-pg", "python-psycopg", "shell", "node-redis", "python-redis"),
    *("python-psycopg-pooler", "node-pg-pooler"),
    *("node-cache", "node-socketio", "node-request"),
    *("shell-remote", "node-remote", "python-remote"),
}


def container_pid(name: str) -> str:
    return subprocess.run(
        ["docker", "inspect", "-f", "{{.State.Pid}}", name], capture_output=True, text=True, check=True
    ).stdout.strip()


def run_in_netns(container: str, argv: list[str], cwd: Path) -> str:
    proc = subprocess.run(
        ["nsenter", "--target", container_pid(container), "--net", "--", *argv],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, f"{argv[-1]} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


def run_program(name: str, container: str, workdir: Path) -> str:
    _, lang, code = SNIPPETS[name]
    if lang == "js":
        # ES modules find node_modules from the script's own directory; one file
        # per process (scenarios run in parallel).
        script = NODE_DIR / "snippets" / f"{name}-{os.getpid()}.mjs"
        script.parent.mkdir(parents=True, exist_ok=True)
        script.write_text(code)
        try:
            return run_in_netns(container, ["node", str(script)], workdir)
        finally:
            script.unlink()
    if lang == "python":
        script = workdir / f"{name}.py"
        script.write_text(code)
        return run_in_netns(container, [sys.executable, str(script)], workdir)
    assert lang == "bash", lang
    return run_in_netns(container, ["bash", "-euo", "pipefail", "-c", code], workdir)
