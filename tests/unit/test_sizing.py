"""The host-sized PostgreSQL settings of roles/chatflow_postgresql, on fixed hosts.

The formulas live once, in the role's defaults; these tests render them with
Ansible's templating for hosts of known size and compare with values worked
out by hand from the documented rules (25% of the memory for shared_buffers
within 128 MB-8 GB, 75% for effective_cache_size, work_mem = (memory -
shared_buffers) / (3 x max_connections) within 4-64 MB, maintenance_work_mem
1/16 within 64 MB-2 GB, half the CPUs per gather within 1-4).  The molecule
suite checks that the live server has what the role computed for its host.
"""

from __future__ import annotations

import pytest

from tools.inputs import defaults  # the repository root is on the path (tests/conftest.py)

P = "chatflow_postgresql_"


def sized(memory_mb: int, cpus: int, **overrides) -> dict:
    rendered = defaults(
        "chatflow_postgresql", facts={"memtotal_mb": memory_mb, "processor_vcpus": cpus}, overrides=overrides
    )
    return {k.removeprefix(P): v for k, v in rendered.items() if k.startswith(P)}


@pytest.mark.parametrize(
    ("memory_mb", "cpus", "want"),
    [
        # A small VM: the floors hold.
        (512, 1, dict(shared_buffers_mb=128, effective_cache_size_mb=384, work_mem_mb=4, maintenance_work_mem_mb=64,
                      max_parallel_workers_per_gather=1, max_parallel_workers=1, max_worker_processes=8)),
        # This machine's size class: 4 GB, 2 CPUs.
        (4096, 2, dict(shared_buffers_mb=1024, effective_cache_size_mb=3072, work_mem_mb=10,
                       maintenance_work_mem_mb=256, max_parallel_workers_per_gather=1, max_parallel_workers=2,
                       max_worker_processes=8)),
        # A large host: the ceilings hold.
        (131072, 32, dict(shared_buffers_mb=8192, effective_cache_size_mb=98304, work_mem_mb=64,
                          maintenance_work_mem_mb=2048, max_parallel_workers_per_gather=4, max_parallel_workers=32,
                          max_worker_processes=32)),
    ],
)  # fmt: skip
def test_memory_and_cpu_settings_follow_the_host(memory_mb, cpus, want):
    got = sized(memory_mb, cpus)
    assert {k: int(got[k]) for k in want} == want


def test_storage_sets_the_planner_costs():
    assert (float(sized(4096, 2)["random_page_cost"]), int(sized(4096, 2)["effective_io_concurrency"])) == (1.1, 200)
    hdd = sized(4096, 2, chatflow_postgresql_storage="hdd")
    assert (float(hdd["random_page_cost"]), int(hdd["effective_io_concurrency"])) == (4.0, 2)


def test_an_operator_limit_on_memory_and_connections_is_followed():
    got = sized(65536, 8, chatflow_postgresql_memory_mb=8192, chatflow_postgresql_max_connections=200)
    assert int(got["shared_buffers_mb"]) == 2048  # a quarter of the memory PostgreSQL may count on
    assert int(got["work_mem_mb"]) == (8192 - 2048) // (200 * 3)
