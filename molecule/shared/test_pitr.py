"""Continuous archiving and point-in-time recovery (role chatflow_pgbackrest) on a provisioned host.

Expectations come from the inputs (roles' defaults with the scenario's inventory on top).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import boto3
import pytest

from hostlib import INPUTS, inventory_vars, secret
from tools.inputs import defaults

PGBR = defaults("chatflow_pgbackrest", overrides=inventory_vars())
STANZA = INPUTS["chatflow_pgbackrest_stanza"]
pytestmark = pytest.mark.skipif(
    not INPUTS["chatflow_pgbackrest_enabled"], reason="chatflow_pgbackrest_enabled is false in this inventory"
)


def pgbackrest(host, *args: str):
    return host.run(f"runuser -u postgres -- pgbackrest --stanza={STANZA} {' '.join(args)}")


def info(host) -> dict:
    res = pgbackrest(host, "--output=json", "info")
    assert res.rc == 0, res.stderr
    return json.loads(res.stdout)[0]


def test_postgresql_archives_through_pgbackrest(sh):
    assert sh.admin_sql("SHOW archive_mode") == "on"
    assert sh.admin_sql("SHOW archive_command") == f"pgbackrest --stanza={STANZA} archive-push %p"
    timeout = INPUTS["chatflow_pgbackrest_archive_timeout_sec"]
    assert sh.admin_sql("SHOW archive_timeout") == (f"{timeout // 60}min" if timeout % 60 == 0 else f"{timeout}s")


def test_check_switches_a_segment_and_sees_it_archived(host, sh):
    """pgbackrest check forces a WAL switch and waits for that segment in the repository."""
    before = int(sh.admin_sql("SELECT archived_count FROM pg_stat_archiver"))
    res = pgbackrest(host, "check")
    assert res.rc == 0, res.stderr
    # The segment is in the repository before archive-push has returned to the archiver.
    for _ in range(20):
        if int(sh.admin_sql("SELECT archived_count FROM pg_stat_archiver")) > before:
            break
        time.sleep(0.5)
    assert int(sh.admin_sql("SELECT archived_count FROM pg_stat_archiver")) > before
    status = json.loads(host.check_output("/usr/local/sbin/chatflow-pitr status"))
    assert status["archiver"]["failing"] is False
    assert status["archiver"]["segments_waiting"] <= 1
    assert status["newest_wal_in_repository"] >= status["archiver"]["last_archived_wal"][:24]


def test_a_full_backup_exists_and_the_repository_verifies(host):
    stanza = info(host)
    assert stanza["status"]["code"] == 0, stanza["status"]
    assert any(b["type"] == "full" for b in stanza["backup"])
    assert stanza["cipher"] == PGBR["chatflow_pgbackrest_cipher_type"]
    res = pgbackrest(host, "verify")
    assert res.rc == 0, res.stdout + res.stderr


def repository_file(host, relative: str) -> bytes:
    """A file of the repository as stored: from the host's directory, or from the bucket (molecule's S3
    emulator, tools/s3_emulator.py, whose address and CA its prepare step wrote)."""
    repo = PGBR["chatflow_pgbackrest_repo_path"].rstrip("/")
    if PGBR["chatflow_pgbackrest_repo_type"] == "posix":
        stored = host.file(f"{repo}/{relative}")
        assert stored.exists
        return stored.content
    emulator = json.loads((Path(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"]) / "s3" / "emulator.json").read_text())
    s3 = boto3.client(
        "s3",
        endpoint_url=emulator["url"],
        verify=emulator["ca"],
        region_name="us-east-1",
        aws_access_key_id=PGBR["chatflow_pgbackrest_s3_key"],
        aws_secret_access_key=secret("s3_key_secret"),
    )
    key = f"{repo}/{relative}".lstrip("/")
    return s3.get_object(Bucket=PGBR["chatflow_pgbackrest_s3_bucket"], Key=key)["Body"].read()


def test_repository_is_encrypted_with_the_kept_key(host):
    # Encrypted: no INI header in clear text.
    assert b"[backrest]" not in repository_file(host, f"backup/{STANZA}/backup.info")
    config = host.file("/etc/pgbackrest/pgbackrest.conf")
    assert (config.user, config.group, config.mode) == ("postgres", "postgres", 0o600)
    assert f"repo1-cipher-pass={secret(f'pgbackrest_cipher_{STANZA}')}" in config.content_string
    assert not host.file("/etc/pgbackrest.conf").exists
    if PGBR["chatflow_pgbackrest_repo_type"] == "posix":
        assert host.file(PGBR["chatflow_pgbackrest_repo_path"]).mode & 0o007 == 0


def test_status_says_whether_the_repository_outlives_the_host(host):
    """S3 is off the host; a directory is only when a network file system holds it."""
    status = json.loads(host.check_output("/usr/local/sbin/chatflow-pitr status"))
    if PGBR["chatflow_pgbackrest_repo_type"] == "s3":
        assert status["repository_off_host"] is True
        assert status["repository"].startswith(f"s3://{PGBR['chatflow_pgbackrest_s3_bucket']}/")
        config = host.file("/etc/pgbackrest/pgbackrest.conf").content_string
        assert f"repo1-storage-ca-file={PGBR['chatflow_pgbackrest_s3_ca_file']}" in config
    else:
        fs = host.check_output(f"findmnt -n -o FSTYPE -T {PGBR['chatflow_pgbackrest_repo_path']}")
        assert status["repository_off_host"] is (fs in {"nfs", "nfs4", "cifs", "smb3", "ceph", "glusterfs"})


@pytest.mark.parametrize("kind", ["full", "diff"])
def test_backups_are_scheduled(host, kind):
    timer = host.service(f"chatflow-pgbackrest-{kind}.timer")
    assert timer.is_enabled and timer.is_running
    unit = host.check_output(f"systemctl cat chatflow-pgbackrest-{kind}.timer")
    assert f"OnCalendar={PGBR[f'chatflow_pgbackrest_{kind}_on_calendar']}" in unit
