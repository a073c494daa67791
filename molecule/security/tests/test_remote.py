"""Remote access, proven from other containers (molecule scenario `security`).

A client in the allowed network connects with sslmode=verify-full (and to
Redis over TLS); plain text, a wrong password and the plain Redis port are
refused; a client outside the allowed network is refused altogether.  The
scenario names its client containers in CHATFLOW_TEST_CLIENT_IN / _OUT.
"""

from __future__ import annotations

import base64
import ipaddress
import os
import shlex

import pytest
import testinfra

from hostlib import DB, INPUTS, inventory_vars, secret
from tools.inputs import defaults

CLIENT_IN = os.environ["CHATFLOW_TEST_CLIENT_IN"]
CLIENT_OUT = os.environ["CHATFLOW_TEST_CLIENT_OUT"]
CA = "/tmp/chatflow-ca.crt"
# Every Redis port of the host (the cache's when chatflow_redis_cache_enabled).
REDIS_PORTS = [INPUTS["chatflow_redis_port"], INPUTS["chatflow_redis_tls_port"]]
if INPUTS["chatflow_redis_cache_enabled"]:
    REDIS_PORTS += [INPUTS["chatflow_redis_cache_port"], INPUTS["chatflow_redis_cache_tls_port"]]


def addresses(machine) -> list[ipaddress.IPv4Interface]:
    out = machine.check_output("ip -4 -o addr show scope global")
    return [ipaddress.ip_interface(line.split()[3]) for line in out.splitlines()]


def server_address_for(server, client) -> str:
    """The database host's address on the client's network."""
    networks = {a.network for a in addresses(client)}
    for a in addresses(server):
        if a.network in networks:
            return str(a.ip)
    raise AssertionError("the client shares no network with the server")


@pytest.fixture(scope="module")
def clients(host):
    inside, outside = (testinfra.get_host(f"docker://{name}") for name in (CLIENT_IN, CLIENT_OUT))
    pem = host.file("/etc/chatflow/tls/ca.crt").content_string
    encoded = base64.b64encode(pem.encode()).decode()
    for client in (inside, outside):
        client.check_output(f"echo {encoded} | base64 -d > {CA}")
    return inside, outside


def psql(
    client,
    server_host: str,
    *,
    sslmode="verify-full",
    user="chatflow_app",
    password=None,
    hostaddr=None,
    sql="SELECT 1",
):
    password = password if password is not None else secret(f"postgresql_{user}")
    conninfo = f"host={server_host} dbname={DB} user={user} sslmode={sslmode} sslrootcert={CA} connect_timeout=4"
    if hostaddr:
        conninfo += f" hostaddr={hostaddr}"
    return client.run(f"PGPASSWORD={shlex.quote(password)} psql {shlex.quote(conninfo)} -X -At -c {shlex.quote(sql)}")


def redis(client, server: str, port: int, *args: str, tls=True):
    auth = shlex.quote(secret("redis_chatflow_app"))
    tls_args = f"--tls --cacert {CA}" if tls else ""
    quoted = " ".join(shlex.quote(a) for a in args)
    return client.run(
        f"REDISCLI_AUTH={auth} timeout 8 redis-cli {tls_args} -h {server} -p {port} --user chatflow_app "
        f"--no-auth-warning {quoted}"
    )


def test_allowed_client_connects_with_verify_full(host, clients):
    inside, _ = clients
    server = server_address_for(host, inside)
    client_ip = str(addresses(inside)[0].ip)
    sql = (
        "SELECT ssl, version, client_addr FROM pg_stat_ssl JOIN pg_stat_activity USING (pid) "
        "WHERE pid = pg_backend_pid()"
    )
    result = psql(inside, server, sql=sql)
    assert result.rc == 0, result.stderr
    ssl, version, client_addr = result.stdout.strip().split("|")
    assert ssl == "t" and version in ("TLSv1.2", "TLSv1.3") and client_addr == client_ip


def test_allowed_client_verifies_the_host_name_too(host, clients):
    inside, _ = clients
    server = server_address_for(host, inside)
    by_name = psql(inside, host.check_output("hostname"), hostaddr=server)
    assert by_name.rc == 0, by_name.stderr
    wrong_name = psql(inside, "db.not-in-the-certificate.invalid", hostaddr=server)
    assert wrong_name.rc != 0 and "does not match host name" in wrong_name.stderr


def test_allowed_client_without_tls_is_refused(host, clients):
    inside, _ = clients
    server = server_address_for(host, inside)
    client_ip = str(addresses(inside)[0].ip)
    plain = psql(inside, server, sslmode="disable")
    assert plain.rc != 0
    assert f'no pg_hba.conf entry for host "{client_ip}", user "chatflow_app", database "{DB}", no encryption' in (
        plain.stderr
    )


def test_allowed_client_with_a_wrong_password_is_refused(host, clients):
    inside, _ = clients
    wrong = psql(inside, server_address_for(host, inside), password="not-the-password")
    assert wrong.rc != 0 and 'password authentication failed for user "chatflow_app"' in wrong.stderr


def test_roles_not_named_for_remote_access_are_refused(host, clients):
    inside, _ = clients
    migrator = psql(inside, server_address_for(host, inside), user="chatflow_migrator")
    assert migrator.rc != 0 and "no pg_hba.conf entry for host" in migrator.stderr


def test_outside_client_is_refused(host, clients):
    _, outside = clients
    server = server_address_for(host, outside)
    result = psql(outside, server)
    assert result.rc != 0
    # The firewall drops it before PostgreSQL sees it: no answer at all.
    assert "timeout expired" in result.stderr or "Connection timed out" in result.stderr, result.stderr
    for port in REDIS_PORTS:
        probe = outside.run(f"timeout 4 bash -c 'echo > /dev/tcp/{server}/{port}'")
        assert probe.rc != 0, port


def test_allowed_client_reaches_redis_over_tls_only(host, clients):
    inside, _ = clients
    server = server_address_for(host, inside)
    assert redis(inside, server, 6380, "PING").stdout.strip() == "PONG"
    assert redis(inside, server, 6380, "SET", "session:remote-probe", "1", "EX", "10").stdout.strip() == "OK"
    assert "NOPERM" in redis(inside, server, 6380, "FLUSHALL").stdout
    # The plain port is loopback-only, whatever the network.
    plain = inside.run(f"timeout 4 bash -c 'echo > /dev/tcp/{server}/6379'")
    assert plain.rc != 0
    # TLS is not optional on the TLS port.
    assert redis(inside, server, 6380, "PING", tls=False).stdout.strip() != "PONG"
    # The cache Redis the same way: TLS from the allowed network, its plain port loopback-only.
    cache_plain, cache_tls = INPUTS["chatflow_redis_cache_port"], INPUTS["chatflow_redis_cache_tls_port"]
    assert redis(inside, server, cache_tls, "SET", "cache:remote-probe", "1", "EX", "10").stdout.strip() == "OK"
    assert "NOPERM" in redis(inside, server, cache_tls, "SET", "session:remote-probe", "1", "EX", "10").stdout
    assert inside.run(f"timeout 4 bash -c 'echo > /dev/tcp/{server}/{cache_plain}'").rc != 0


def fetch(client, url: str, *, verify=True) -> tuple[int, str]:
    """GET url from the client with python3 (the CA verifies the host); (exit code, body or error)."""
    context = f"ssl.create_default_context(cafile={CA!r})" if verify else "None"
    code = (
        "import ssl,sys,urllib.request\n"
        f"try: print(urllib.request.urlopen({url!r}, context={context}, timeout=5).read().decode()[:2000])\n"
        "except Exception as exc: print(repr(exc)); sys.exit(1)"
    )
    res = client.run(f"timeout 10 python3 -c {shlex.quote(code)}")
    return res.rc, res.stdout


def test_the_monitoring_network_scrapes_over_tls_only(host, clients):
    """With chatflow_monitoring_cidrs, a Prometheus in that network scrapes the TLS exporters with the
    project's CA; plain HTTP is refused, the loopback-only exporters and every client outside get nothing."""
    assert INPUTS["chatflow_monitoring_cidrs"], "the scenario's inventory must set chatflow_monitoring_cidrs"
    inside, outside = clients
    ports = INPUTS["chatflow_monitoring_ports"]
    server = server_address_for(host, inside)
    monitoring = defaults("chatflow_monitoring", overrides=inventory_vars())
    served = ["node", "postgres", "redis"] + (
        ["prometheus"] if monitoring["chatflow_monitoring_prometheus_enabled"] else []
    )
    for name in served:
        rc, page = fetch(inside, f"https://{server}:{ports[name]}/metrics")
        assert rc == 0 and "# HELP" in page, f"{name}: {page}"
        rc, page = fetch(inside, f"http://{server}:{ports[name]}/metrics")
        assert rc != 0, f"{name} answered plain HTTP: {page[:200]}"
    for name in ("pgbouncer", "mtail"):
        rc, page = fetch(inside, f"http://{server}:{ports[name]}/metrics")
        assert rc != 0, f"{name} is reachable from the network: {page[:200]}"
    far = server_address_for(host, outside)
    for name in served:
        rc, page = fetch(outside, f"https://{far}:{ports[name]}/metrics", verify=False)
        assert rc != 0 and "timed out" in page, f"{name} answered a client outside the monitoring network: {page}"
