"""One throwaway PostgreSQL 15 cluster for the whole integration session."""

import pytest
from pgtest import HAVE_SERVER, start_cluster, stop_cluster


@pytest.fixture(scope="session")
def cluster():
    if not HAVE_SERVER:
        pytest.skip("no PostgreSQL 15 server binaries (PG_BINDIR)")
    tmp, sock = start_cluster()
    try:
        yield sock
    finally:
        stop_cluster(tmp)
