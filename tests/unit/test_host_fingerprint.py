"""chatflow.db.host_fingerprint: what counts as a change, and when a rerun may be skipped."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "collections"))
from ansible_collections.chatflow.db.plugins.modules import host_fingerprint as hf  # noqa: E402

MODULE = ROOT / "collections/ansible_collections/chatflow/db/plugins/modules/host_fingerprint.py"


@pytest.fixture
def tree(tmp_path):
    (tmp_path / "conf").mkdir()
    (tmp_path / "conf" / "a.conf").write_text("x = 1\n")
    (tmp_path / "conf" / "sub").mkdir()
    (tmp_path / "conf" / "sub" / "b.conf").write_text("y = 2\n")
    return tmp_path / "conf"


def test_content_mode_and_new_files_count(tree):
    before = hf.tree_items(str(tree))
    assert set(before) == {f"file:{tree}", f"file:{tree}/a.conf", f"file:{tree}/sub", f"file:{tree}/sub/b.conf"}
    (tree / "a.conf").write_text("x = 2\n")
    assert hf.tree_items(str(tree))[f"file:{tree}/a.conf"] != before[f"file:{tree}/a.conf"]
    (tree / "a.conf").write_text("x = 1\n")
    assert hf.tree_items(str(tree)) == before  # same content again: no change (mtime does not count)
    os.chmod(tree / "sub" / "b.conf", 0o644 if (tree / "sub" / "b.conf").stat().st_mode & 0o777 != 0o644 else 0o600)
    assert hf.tree_items(str(tree)) != before
    (tree / "intruder.conf").write_text("")
    assert f"file:{tree}/intruder.conf" in hf.tree_items(str(tree))


def test_a_directory_without_recurse_counts_itself_only(tree):
    items = hf.tree_items(str(tree), recurse=False)
    assert list(items) == [f"file:{tree}"]
    assert items[f"file:{tree}"].endswith(":dir")


def test_a_missing_path_is_absent(tmp_path):
    assert hf.tree_items(str(tmp_path / "nope")) == {f"file:{tmp_path / 'nope'}": "absent"}


def test_compare_names_what_changed_and_honours_the_age():
    items = {"inputs": "i", "unit:redis-server.service": "active/enabled", "file:/etc/x": "a"}
    fp = hf.fingerprint_of(items)
    now = time.time()
    record = {"fingerprint": fp, "recorded_at": now - 3600, "items": items}
    assert hf.compare(record, items, fp, 24, now)[:2] == (True, "")
    stopped = dict(items, **{"unit:redis-server.service": "inactive/enabled"})
    unchanged, reason, differs, _age = hf.compare(record, stopped, hf.fingerprint_of(stopped), 24, now)
    assert not unchanged and differs == ["unit:redis-server.service"] and "redis-server" in reason
    assert hf.compare(record, items, fp, 0, now)[0] is False  # too old
    assert hf.compare(None, items, fp, 24, now)[1] == "no complete run recorded yet"
    assert hf.compare(dict(record, recorded_at=now + 7200), items, fp, 24, now)[0] is False  # clock went back


def test_new_inputs_alone_force_a_complete_run():
    items = {"inputs": "old"}
    record = {"fingerprint": hf.fingerprint_of(items), "recorded_at": time.time(), "items": items}
    new = {"inputs": "new"}
    assert hf.compare(record, new, hf.fingerprint_of(new), 24, time.time())[2] == ["inputs"]


def run_module(args: dict, check: bool = False) -> dict:
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as handle:
        json.dump({"ANSIBLE_MODULE_ARGS": {**args, "_ansible_check_mode": check}}, handle)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT / "collections"), *sys.path]))
    proc = subprocess.run(
        [sys.executable, str(MODULE), handle.name], capture_output=True, text=True, env=env, check=False
    )
    os.unlink(handle.name)
    return json.loads(proc.stdout)


def test_record_then_compare_through_the_module(tree, tmp_path):
    record = tmp_path / "state" / "fingerprint.json"
    args = {
        "inputs": "digest",
        "path": str(record),
        "trees": [{"path": str(tree)}],
        "commands": [{"name": "echo", "argv": ["echo", "hello"]}, {"name": "stdin", "argv": ["cat"], "stdin": "sql"}],
    }
    first = run_module(args)
    assert first["unchanged"] is False and first["reason"] == "no complete run recorded yet"
    dry = run_module({**args, "state": "record"}, check=True)
    assert dry["recorded"] is True and dry["changed"] is False and not record.exists()
    done = run_module({**args, "state": "record"})
    assert done["recorded"] is True and done["changed"] is False
    assert oct(record.stat().st_mode & 0o777) == "0o600"
    assert run_module(args)["unchanged"] is True
    again = run_module({**args, "state": "record"})
    assert again["recorded"] is False
    (tree / "a.conf").write_text("drifted\n")
    drifted = run_module(args)
    assert drifted["unchanged"] is False and drifted["differs"] == [f"file:{tree}/a.conf"]
    changed_output = run_module({**args, "commands": [{"name": "echo", "argv": ["echo", "bye"]}]})
    assert "command:echo" in changed_output["differs"]


def test_a_command_missing_on_a_fresh_host_is_a_state_not_a_failure(tmp_path):
    args = {
        "inputs": "d",
        "path": str(tmp_path / "f.json"),
        "commands": [{"name": "nft", "argv": ["/nonexistent/nft", "list", "ruleset"]}],
        "units": [],
    }
    res = run_module(args)
    assert not res.get("failed"), res
    assert res["unchanged"] is False and res["items"] == 2


def test_bad_arguments_fail_clearly(tmp_path):
    res = run_module({"inputs": "d", "path": str(tmp_path / "f.json"), "trees": [{"path": "relative/path"}]})
    assert res.get("failed") and "not an absolute path" in res["msg"]
    res = run_module({"inputs": "d", "path": str(tmp_path / "f.json"), "max_age_hours": -1})
    assert res.get("failed") and "max_age_hours" in res["msg"]


def test_manifests_name_whose_state_drifted_and_a_targeted_record_keeps_the_age(tmp_path):
    redis = tmp_path / "redis"
    redis.mkdir()
    (redis / "redis.conf").write_text("port 6379\n")
    pg = tmp_path / "pg"
    pg.mkdir()
    (pg / "postgresql.conf").write_text("port = 5432\n")
    record = tmp_path / "fingerprint.json"
    args = {
        "inputs": "digest",
        "path": str(record),
        "manifests": {
            "chatflow_redis": {"trees": [{"path": str(redis)}]},
            "chatflow_postgresql": {
                "trees": [{"path": str(pg)}],
                "commands": [{"name": "echo", "argv": ["echo", "a"]}],
            },
        },
    }
    run_module({**args, "state": "record"})
    complete_at = json.loads(record.read_text())["complete_at"]
    (redis / "redis.conf").write_text("port 6380\n")
    drifted = run_module(args)
    assert drifted["targetable"] is True
    assert drifted["differs_by_owner"] == {"chatflow_redis": [f"file:{redis}/redis.conf"]}
    assert drifted["targets"] == ["chatflow_redis"]
    # A targeted run records the repaired state but not a new complete run.
    time.sleep(0.01)
    run_module({**args, "state": "record", "complete": False})
    assert json.loads(record.read_text())["complete_at"] == complete_at
    run_module({**args, "state": "record"})
    assert json.loads(record.read_text())["complete_at"] > complete_at


def test_what_no_role_can_repair_alone_is_not_targetable(tmp_path):
    conf = tmp_path / "conf"
    conf.mkdir()
    record = tmp_path / "fingerprint.json"
    args = {
        "inputs": "digest",
        "path": str(record),
        "trees": [{"path": str(tmp_path / "flat")}],
        "manifests": {"chatflow_redis": {"trees": [{"path": str(conf)}]}},
    }
    run_module({**args, "state": "record"})
    (tmp_path / "flat").write_text("x")  # an item of no manifest
    assert run_module(args)["targetable"] is False
    (tmp_path / "flat").unlink()
    assert run_module({**args, "inputs": "new"})["targetable"] is False  # new inputs: a complete run
    (conf / "new.conf").write_text("x")  # a file that appeared in a role's tree: that role's
    res = run_module(args)
    assert res["targetable"] is True and res["differs_by_owner"] == {"chatflow_redis": [f"file:{conf}/new.conf"]}
    run_module({**args, "state": "record"})
    (conf / "new.conf").unlink()  # gone: no item now, the record says whose it was
    res = run_module(args)
    assert res["targetable"] is True and res["differs_by_owner"] == {"chatflow_redis": [f"file:{conf}/new.conf"]}
    assert run_module({**args, "manifests": {"chatflow_redis": {"bogus": []}}})["msg"].startswith(
        "manifests.chatflow_redis"
    )


def test_a_repair_runs_the_roles_that_follow_the_drifted_one():
    manifests = {
        "chatflow_tls": {},
        "chatflow_postgresql": {"follows": ["chatflow_tls"]},
        "chatflow_database": {},
        "chatflow_pgbouncer": {"follows": ["chatflow_postgresql", "chatflow_database"]},
        "chatflow_app_env": {},
    }
    assert hf.followers({"chatflow_tls": []}, manifests) == [
        "chatflow_pgbouncer",
        "chatflow_postgresql",
        "chatflow_tls",
    ]
    assert hf.followers({"chatflow_database": []}, manifests) == ["chatflow_database", "chatflow_pgbouncer"]
    assert hf.followers({"chatflow_app_env": []}, manifests) == ["chatflow_app_env"]


def test_a_manifest_that_a_bad_input_made_unreadable_means_a_complete_run(tmp_path):
    """A relative path from a bad input is no failure of the comparison: every role runs, and
    the preflights then name the input before anything changes."""
    args = {
        "inputs": "d",
        "path": str(tmp_path / "f.json"),
        "manifests": {"chatflow_app_env": {"trees": [{"path": "my-mvp-slack", "recurse": False}]}},
    }
    res = run_module(args)
    assert not res.get("failed"), res
    assert res["unchanged"] is False and res["targetable"] is False
    assert "manifests.chatflow_app_env.trees: my-mvp-slack is not an absolute path" in res["reason"]
    recorded = run_module({**args, "state": "record"})
    assert recorded.get("failed") and "not an absolute path" in recorded["msg"]


def test_the_roles_manifests_follow_what_their_state_is_derived_from():
    """The real roles' `follows` (roles/*/vars/main.yml): a drift of each role runs these roles.  The
    default scenario plants every drift in one run (molecule/default/tests/test_fingerprint.py); this
    is the per-role part of that check, without a run."""
    import yaml  # noqa: PLC0415

    manifests = {}
    for vars_file in sorted(ROOT.glob("roles/chatflow_*/vars/main.yml")):
        role = vars_file.parent.parent.name
        manifest = (yaml.safe_load(vars_file.read_text()) or {}).get(f"__{role}_manifest")
        if manifest is not None:
            manifests[role] = {"follows": manifest["manages"].get("follows") or []}
    tls_followers = [
        "chatflow_monitoring",
        "chatflow_pgbouncer",
        "chatflow_postgresql",
        "chatflow_redis",
        "chatflow_tls",
    ]
    want = {
        "chatflow_tls": tls_followers,
        "chatflow_postgresql": ["chatflow_pgbouncer", "chatflow_postgresql"],
        "chatflow_database": ["chatflow_database", "chatflow_pgbouncer"],
        "chatflow_pgbouncer": ["chatflow_pgbouncer"],
    }
    alone = set(manifests) - set(want)
    assert alone == {
        "chatflow_firewall",
        "chatflow_redis",
        "chatflow_app_env",
        "chatflow_backup",
        "chatflow_pgbackrest",
        "chatflow_monitoring",
    }, "a role without a manifest, or a new one: say what a drift of it runs"
    for role in manifests:
        assert hf.followers({role: []}, manifests) == want.get(role, [role]), role
