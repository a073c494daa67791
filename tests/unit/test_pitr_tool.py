"""roles/chatflow_pgbackrest/files/chatflow-pitr.py: targets, refused inputs and WAL arithmetic.

The restore itself is proven against real PostgreSQL and pgBackRest by the reliability scenario's drill."""

from __future__ import annotations

import argparse
import importlib.util
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "roles/chatflow_pgbackrest/files/chatflow-pitr.py"
_spec = importlib.util.spec_from_file_location("chatflow_pitr", SCRIPT)
pitr = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(pitr)
CFG = {"version": "15", "cluster": "main", "database": "chatflow_mvp"}


def args(**given) -> argparse.Namespace:
    values = {"set": None, "time": None, "xid": None, "name": None, "immediate": False, "live": False, "confirm": None}
    return argparse.Namespace(**{**values, **given})


@pytest.mark.parametrize(
    ("given", "options"),
    [
        ({}, []),
        (
            {"time": "2026-12-02 10:00:00+00"},
            ["--type=time", "--target=2026-12-02 10:00:00+00", "--target-action=promote"],
        ),
        ({"xid": "4711"}, ["--type=xid", "--target=4711", "--target-action=promote"]),
        ({"name": "before_x"}, ["--type=name", "--target=before_x", "--target-action=promote"]),
        (
            {"set": "20261202-013000F", "immediate": True},
            ["--type=immediate", "--target-action=promote", "--set=20261202-013000F"],
        ),
    ],
)
def test_each_target_gives_pgbackrest_its_options(given, options):
    assert pitr.target_options(args(**given)) == options


@pytest.mark.parametrize(
    ("given", "named"),
    [
        ({"live": True}, "--confirm chatflow_mvp"),
        ({"live": True, "confirm": "chatflow"}, "--confirm chatflow_mvp"),
        ({"set": "latest"}, "--set"),
        ({"xid": "12; rm"}, "--xid"),
        ({"name": "a b"}, "--name"),
    ],
)
def test_bad_input_is_refused_and_named(given, named):
    with pytest.raises(pitr.Failure, match=named):
        pitr.check_args(CFG, args(**given))


def test_a_confirmed_live_restore_passes():
    pitr.check_args(CFG, args(live=True, confirm="chatflow_mvp", set="20261202-013000F_20261203-013000D"))


def test_segments_count_across_a_log_file_boundary():
    assert pitr.segment_number("0000000100000000000000FF") + 1 == pitr.segment_number("000000010000000100000000")
    # A timeline switch does not move the position; history and backup files are read by their segment.
    assert pitr.segment_number("000000020000000000000005") == pitr.segment_number("000000010000000000000005")
    assert pitr.segment_number("000000010000000000000003.00000028.backup") == 3
    assert pitr.segment_number("00000002.history") is None
    assert pitr.segment_number(None) is None


MOUNTS = """overlay / overlay rw,relatime 0 0
/dev/sda1 /var/lib ext4 rw 0 0
nas:/export/pgbackrest /var/lib/pgbackrest nfs4 rw 0 0
/dev/sdb1 /srv/backup\\040disk ext4 rw 0 0
"""


@pytest.mark.parametrize(
    ("path", "kind"),
    [
        ("/var/lib/pgbackrest", "nfs4"),
        ("/var/lib/pgbackrest/archive", "nfs4"),
        ("/var/lib/pgbackrest2", "ext4"),
        ("/var/lib/postgresql", "ext4"),
        ("/srv/backup disk/repo", "ext4"),
        ("/tmp", "overlay"),
    ],
)
def test_the_repository_file_system_is_the_longest_mount_holding_it(path, kind):
    assert pitr.mount_type(path, MOUNTS) == kind


def test_an_s3_repository_is_off_the_host():
    assert pitr.off_host({"repository_type": "s3", "repository": "s3://b/p at s3.example"})
