"""The kernel settings Redis asks for and the postmaster's protection from the OOM killer (docs/design.md, "Kernel").

A container shares its host's kernel: there the files meant for a VM's boot are checked, and the live
values only where the host could set them (on a VM, both).
"""

from __future__ import annotations

import pytest

from hostlib import INPUTS, inventory_vars
from tools.inputs import defaults

REDIS = defaults("chatflow_redis", overrides=inventory_vars())
UNIT = f"postgresql@{INPUTS['chatflow_postgresql_version']}-{INPUTS['chatflow_postgresql_cluster']}"
DATA = f"/var/lib/postgresql/{INPUTS['chatflow_postgresql_version']}/{INPUTS['chatflow_postgresql_cluster']}"


@pytest.fixture(scope="module")
def container(host) -> bool:
    return host.run("systemd-detect-virt --container").rc == 0


def test_overcommit_is_written_for_boot_and_live_on_a_vm(host, container):
    want = REDIS["chatflow_redis_vm_overcommit_memory"]
    assert host.file("/etc/sysctl.d/60-chatflow-redis.conf").contains(f"^vm.overcommit_memory={want}$")
    if not container:
        assert host.file("/proc/sys/vm/overcommit_memory").content_string.strip() == str(want)


def test_transparent_huge_pages_are_off_at_boot_and_live_on_a_vm(host, container):
    tmpfiles = host.file("/etc/tmpfiles.d/chatflow-thp.conf").content_string
    assert "w /sys/kernel/mm/transparent_hugepage/enabled - - - - never" in tmpfiles
    if not container:
        assert "[never]" in host.file("/sys/kernel/mm/transparent_hugepage/enabled").content_string


def test_the_postmaster_is_out_of_the_oom_killers_reach_and_its_backends_are_not(host, sh, container):
    assert host.check_output(f"systemctl show {UNIT} -p OOMScoreAdjust") == "OOMScoreAdjust=-1000"
    postmaster = host.file(f"{DATA}/postmaster.pid").content_string.split()[0]
    environ = host.check_output(f"tr '\\0' '\\n' < /proc/{postmaster}/environ")
    assert {"PG_OOM_ADJUST_FILE": "/proc/self/oom_score_adj", "PG_OOM_ADJUST_VALUE": "0"}.items() <= dict(
        line.split("=", 1) for line in environ.splitlines() if "=" in line
    ).items()
    # A child of the postmaster is back at 0 (on a VM, where the postmaster itself is at -1000).
    checkpointer = sh.admin_sql("SELECT pid FROM pg_stat_activity WHERE backend_type = 'checkpointer'")
    assert host.file(f"/proc/{checkpointer}/oom_score_adj").content_string.strip() == "0"
    # systemd lowers the score only with CAP_SYS_RESOURCE, which a container does not have.
    expected = "0" if container else "-1000"
    assert host.file(f"/proc/{postmaster}/oom_score_adj").content_string.strip() == expected
