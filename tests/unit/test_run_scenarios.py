"""make molecule's lanes (tools/run_scenarios.py): every scenario in exactly one lane, failures stop and fail."""

from __future__ import annotations

import os
import re
import stat
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tools"))

import run_scenarios  # noqa: E402


def test_every_scenario_runs_in_exactly_one_lane():
    lanes = re.search(r"^MOLECULE_LANES \?= (.*)$", (ROOT / "Makefile").read_text(), re.M).group(1).split()
    listed = [scenario for lane in lanes for scenario in lane.split(",")]
    scenarios = sorted(p.parent.name for p in (ROOT / "molecule").glob("*/molecule.yml"))
    assert sorted(listed) == scenarios


@pytest.fixture
def fake_molecule(tmp_path, monkeypatch):
    """A `molecule` on PATH that fails for scenario 'bad' and records what it ran."""
    log = tmp_path / "ran"
    script = tmp_path / "molecule"
    script.write_text(f'#!/bin/sh\necho "$3" >> {log}\necho "testing $3"\n[ "$3" != bad ]\n')
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    return log


def test_lanes_pass_and_prefix_their_output(fake_molecule, capsys):
    assert run_scenarios.main(["a,b", "c"]) == 0
    assert sorted(fake_molecule.read_text().split()) == ["a", "b", "c"]
    out = capsys.readouterr().out
    assert "[b] testing b" in out and "== scenario c took" in out


def test_a_failure_stops_its_lane_and_fails_the_run(fake_molecule, capsys):
    assert run_scenarios.main(["bad,never"]) == 1
    assert fake_molecule.read_text().split() == ["bad"]
    assert "== molecule FAILED: bad" in capsys.readouterr().out
