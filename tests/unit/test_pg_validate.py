"""The pg_hba.conf policy checker used as `validate:`."""

import pg_validate


def errors(text, allow_any=False):
    return pg_validate.hba_errors(text.splitlines(), allow_any)


def test_the_rendered_policy_passes():
    text = """
    # comment
    local   postgres,chatflow_mvp postgres            peer
    local   chatflow_mvp chatflow_app                 scram-sha-256
    host    chatflow_mvp chatflow_app  127.0.0.1/32   scram-sha-256
    host    chatflow_mvp chatflow_app  ::1/128        scram-sha-256
    hostssl chatflow_mvp chatflow_app  10.1.0.0/16    scram-sha-256
    """
    assert errors(text) == []


def test_weak_methods_are_refused():
    for method in ("trust", "password", "md5", "ident"):
        found = errors(f"host db u 127.0.0.1/32 {method}")
        assert found and "not allowed" in found[0]


def test_open_networks_need_the_explicit_flag():
    assert "admits every address" in errors("hostssl db u 0.0.0.0/0 scram-sha-256")[0]
    assert "admits every address" in errors("hostssl db u ::/0 scram-sha-256")[0]
    assert errors("hostssl db u 0.0.0.0/0 scram-sha-256", allow_any=True) == []


def test_malformed_lines_are_refused():
    assert "not a network" in errors("host db u 10.0.0.1/8 scram-sha-256")[0]
    assert "connection type" in errors("hostx db u 10.0.0.0/8 scram-sha-256")[0]
    assert "expected TYPE" in errors("host db u scram-sha-256")[0]


def test_every_line_names_its_database_and_role():
    assert "database 'all'" in errors("local all postgres peer")[0]
    assert "user 'all'" in errors("host db all 127.0.0.1/32 scram-sha-256")[0]
    assert "database 'all'" in errors("hostssl db,all u 10.0.0.0/8 scram-sha-256")[0]
    # A reject line may cover everything: it only takes access away.
    assert errors("host all all 10.0.0.0/8 reject") == []


def test_remote_networks_must_use_tls():
    assert "use hostssl" in errors("host db u 10.0.0.0/8 scram-sha-256")[0]
    assert "use hostssl" in errors("hostnossl db u 10.0.0.0/8 scram-sha-256")[0]
    assert errors("host db u 127.0.0.1/32 scram-sha-256") == []
    assert errors("host db u ::1/128 scram-sha-256") == []


def test_peer_is_for_the_socket_only():
    assert "local (socket) lines only" in errors("host db u 127.0.0.1/32 peer")[0]
