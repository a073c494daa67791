"""Security baseline of the ChatFlow database host: one test per control.

In the spirit of dev-sec's postgres-baseline and the CIS PostgreSQL 15
benchmark.  Where a control is about access, the access itself is tried (a
connection that must be refused is refused), not only the setting.  The
"Security" section of docs/design.md lists the same controls with the variables that
govern them.  Runs in every molecule scenario that provisions site.yml and
against the sandbox (`make sandbox-verify`); it reads what the host was
configured with (listen addresses, remote networks) instead of assuming it.
"""

from __future__ import annotations

import ipaddress
import json
import re
import shlex

import pytest

from guide import run_in_netns
from hostlib import APP_USER, DB, HOST_NAME, INPUTS, PROJECT, REPO, inventory_vars
from tools.inputs import defaults

PG = f"{INPUTS['chatflow_postgresql_version']}/{INPUTS['chatflow_postgresql_cluster']}"
CONF_DIR = f"/etc/postgresql/{PG}"
DATA_DIR = f"/var/lib/postgresql/{PG}"
PG_LOG = f"/var/log/postgresql/postgresql-{PG.replace('/', '-')}.log"
TLS_DIR = INPUTS["chatflow_tls_dir"]
LOGIN_ROLES = tuple(
    INPUTS[f"chatflow_database_{kind}_role"] for kind in ("app", "request", "readonly", "migrator", "monitor")
)
DATABASE = defaults("chatflow_database", overrides=inventory_vars())
# The trusted side that row-level security does not apply to, and nothing else (chatflow_database_rls_bypass_roles).
RLS_BYPASS = set(DATABASE["chatflow_database_rls_bypass_roles"])
# The networks the scenario's inventory lets in (none by default).
PG_REMOTE = {ipaddress.ip_network(c) for c in INPUTS["chatflow_postgresql_remote_cidrs"]}
REDIS_REMOTE = {ipaddress.ip_network(c) for c in INPUTS["chatflow_redis_remote_cidrs"]}
ESCALATING = ("rolsuper", "rolcreaterole", "rolcreatedb", "rolreplication", "rolbypassrls")
ENV_DIRS = [PROJECT, f"{PROJECT}/backend", f"{PROJECT}/tests"]
# Each Redis of the host (chatflow_redis_cache_enabled adds the cache): its ACL file, config and port.
REDIS_SERVERS = [("/etc/redis/users.acl", "/etc/redis/redis.conf", INPUTS["chatflow_redis_port"])]
if INPUTS["chatflow_redis_cache_enabled"]:
    REDIS_SERVERS.append(
        ("/etc/redis/users-cache.acl", "/etc/redis/redis-cache.conf", INPUTS["chatflow_redis_cache_port"])
    )
REDIS_TLS = [("/etc/redis/redis.conf", INPUTS["chatflow_redis_tls_port"])]
if INPUTS["chatflow_redis_cache_enabled"]:
    REDIS_TLS.append(("/etc/redis/redis-cache.conf", INPUTS["chatflow_redis_cache_tls_port"]))


def hba_rules(sh):
    rows = sh.admin_sql(
        "SELECT type, array_to_string(database, ','), array_to_string(user_name, ','), coalesce(address, ''), "
        "coalesce(netmask, ''), auth_method, coalesce(error, '') FROM pg_hba_file_rules ORDER BY line_number",
        db="postgres",
    )
    return [
        dict(zip(("type", "db", "user", "address", "mask", "method", "error"), r.split("|"), strict=True))
        for r in rows.splitlines()
    ]


def network(rule):
    prefix = bin(int(ipaddress.ip_address(rule["mask"]))).count("1")
    return ipaddress.ip_network(f"{rule['address']}/{prefix}", strict=False)


def priv(sh, role: str, table: str, privilege: str) -> str:
    return sh.admin_sql(f"SELECT has_table_privilege('{role}', '{table}', '{privilege}')")


def app_psql(sh, conninfo: str, sql: str = "SELECT 1"):
    """psql as the app's OS user with the app's password from its env file and an explicit conninfo."""
    return sh.app(f'PGPASSWORD="$DB_PASSWORD" psql {shlex.quote(conninfo)} -X -At -c {shlex.quote(sql)}')


# --- PostgreSQL: authentication ---------------------------------------------------------


def test_pg01_every_stored_password_is_scram(sh):
    """PG-01 scram-sha-256 for every stored password (password_encryption)."""
    assert sh.admin_sql("SHOW password_encryption") == "scram-sha-256"
    weak = sh.admin_sql(
        "SELECT rolname FROM pg_authid WHERE rolpassword IS NOT NULL AND rolpassword NOT LIKE 'SCRAM-SHA-256$%'",
        db="postgres",
    )
    assert weak == ""
    scram = sh.admin_sql("SELECT rolname FROM pg_authid WHERE rolpassword LIKE 'SCRAM-SHA-256$%'", db="postgres")
    assert set(scram.split()) == set(LOGIN_ROLES)


def test_pg02_hba_has_no_weak_method_and_names_database_and_role(sh):
    """PG-02 pg_hba: scram-sha-256 or peer only, each line names its database and role (no `all`)."""
    rules = hba_rules(sh)
    assert rules
    for rule in rules:
        assert rule["error"] == "", rule
        assert rule["method"] in ("scram-sha-256", "peer"), rule
        assert "all" not in rule["db"].split(",") and "all" not in rule["user"].split(","), rule
        if rule["method"] == "peer":
            assert rule["type"] == "local" and rule["user"] == "postgres", rule
        if rule["type"] == "local" and rule["method"] == "scram-sha-256":
            assert rule["user"] in LOGIN_ROLES, rule


def test_pg03_superuser_only_by_local_peer(host, sh):
    """PG-03 local admin access by peer only: postgres over the socket as the postgres OS user, nothing else."""
    assert sh.admin_sql("SELECT current_user") == "postgres"
    as_root = host.run("psql -X -U postgres -d postgres -c 'SELECT 1'")
    assert as_root.rc != 0 and "Peer authentication failed" in as_root.stderr
    over_tcp = host.run("PGPASSWORD=x PGCONNECT_TIMEOUT=3 psql -X -h 127.0.0.1 -U postgres -d postgres -c 'SELECT 1'")
    assert over_tcp.rc != 0 and 'no pg_hba.conf entry for host "127.0.0.1", user "postgres"' in over_tcp.stderr


def test_pg04_remote_lines_are_tls_only_and_never_open_to_all(sh):
    """PG-04 remote access only from configured CIDRs and only over TLS (hostssl); never 0.0.0.0/0."""
    for rule in hba_rules(sh):
        if rule["type"] == "local":
            continue
        net = network(rule)
        assert net.prefixlen > 0, rule
        if not net.is_loopback:
            assert rule["type"] == "hostssl", rule
            assert net in PG_REMOTE, f"a network the inventory does not let in: {rule}"
    networks = {network(r) for r in hba_rules(sh) if r["type"] == "hostssl"}
    assert networks >= PG_REMOTE, "every network of chatflow_postgresql_remote_cidrs has its hostssl lines"


def test_pg05_listen_addresses_follow_the_remote_networks(host, sh):
    """PG-05 listen_addresses: loopback only unless remote networks are configured."""
    listen = sh.admin_sql("SHOW listen_addresses")
    if not PG_REMOTE:
        assert listen == "localhost"
        assert not host.socket("tcp://0.0.0.0:5432").is_listening
        listening = host.check_output("ss -Htln 'sport = :5432'")
        for line in listening.splitlines():
            local = line.split()[3].rsplit(":", 1)[0].strip("[]")
            assert ipaddress.ip_address(local).is_loopback, line
    else:
        assert listen != "localhost"


def test_pg06_connections_the_policy_does_not_name_are_refused(host, sh):
    """PG-06 refused: a wrong password, the app on another database, an unknown role."""
    wrong = host.run("PGPASSWORD=not-the-password psql -X -h 127.0.0.1 -U chatflow_app -d chatflow_mvp -c 'SELECT 1'")
    assert wrong.rc != 0 and 'password authentication failed for user "chatflow_app"' in wrong.stderr
    other_db = app_psql(sh, "host=127.0.0.1 dbname=postgres user=chatflow_app")
    assert (
        other_db.rc != 0
        and 'no pg_hba.conf entry for host "127.0.0.1", user "chatflow_app", database "postgres"' in (other_db.stderr)
    )
    unknown = host.run("PGPASSWORD=x psql -X -h 127.0.0.1 -U intruder -d chatflow_mvp -c 'SELECT 1'")
    assert unknown.rc != 0 and "no pg_hba.conf entry" in unknown.stderr


# --- PostgreSQL: TLS ----------------------------------------------------------------------


def test_pg07_tls_on_with_tls12_or_newer(host, sh):
    """PG-07 TLS on by default, TLS 1.2 or newer (chatflow_postgresql_ssl, _ssl_min_protocol_version)."""
    assert sh.admin_sql("SHOW ssl") == "on"
    assert sh.admin_sql("SHOW ssl_min_protocol_version") in ("TLSv1.2", "TLSv1.3")
    before = int(host.check_output(f"wc -l < {PG_LOG}"))
    old = host.run(
        "openssl s_client -connect 127.0.0.1:5432 -starttls postgres -tls1_1 -cipher 'DEFAULT:@SECLEVEL=0' </dev/null"
    )
    assert old.rc != 0
    # The server is the one that refused it.
    assert "could not accept SSL connection: unsupported protocol" in host.check_output(
        f"tail -n +{before + 1} {PG_LOG}"
    )
    modern = host.run("openssl s_client -connect 127.0.0.1:5432 -starttls postgres -tls1_2 </dev/null")
    assert modern.rc == 0 and re.search(r"Protocol\s*: TLSv1\.2", modern.stdout)


SSLYZE = REPO / ".state" / "sslyze" / "bin" / "sslyze"
POOLER = defaults("chatflow_pgbouncer", overrides=inventory_vars())


def test_pg07b_tls_endpoints_meet_mozilla_intermediate(host, tmp_path):
    """PG-07b PostgreSQL and PgBouncer offer only Mozilla's "intermediate" TLS (chatflow_tls_ciphers): scanned
    with sslyze over PostgreSQL's STARTTLS, trusting our CA; protocols, suites, curves, certificate."""
    targets = [f"127.0.0.1:{INPUTS['chatflow_postgresql_port']}"]
    if POOLER["chatflow_pgbouncer_enabled"] and POOLER["chatflow_pgbouncer_client_tls"]:
        targets.append(f"127.0.0.1:{INPUTS['chatflow_pgbouncer_port']}")
    ca = tmp_path / "ca.crt"
    ca.write_text(host.file(f"{TLS_DIR}/ca.crt").content_string)
    argv = [str(SSLYZE), "--starttls=postgres", "--mozilla_config=intermediate", f"--certinfo_ca_file={ca}"]
    out = run_in_netns(HOST_NAME, [*argv, "--json_out=scan.json", *targets], tmp_path)
    for target in targets:
        assert f"{target}: OK - Compliant" in out, out[-3000:]


def test_pg08_server_certificate_is_ours_with_the_hosts_names(host):
    """PG-08 our own CA signs the server certificate; its SAN holds the host's names and addresses."""
    cert = host.check_output(f"openssl x509 -in {CONF_DIR}/server.crt -noout -ext subjectAltName -issuer")
    hostname = host.check_output("hostname")
    assert "DNS:localhost" in cert and f"DNS:{hostname}" in cert and "IP Address:127.0.0.1" in cert
    for address in host.check_output("hostname -I").split():
        if ":" not in address:
            assert f"IP Address:{address}" in cert
    assert "ChatFlow database CA" in cert
    verify = host.run(f"openssl verify -CAfile {TLS_DIR}/ca.crt {CONF_DIR}/server.crt")
    assert verify.rc == 0, verify.stdout + verify.stderr
    assert "snakeoil" not in host.file(f"{CONF_DIR}/server.crt").content_string


def test_pg09_verify_full_works_with_the_ca_written_for_clients(host, sh):
    """PG-09 the CA certificate is written for clients: sslmode=verify-full succeeds with it."""
    ca = host.file(f"{TLS_DIR}/ca.crt")
    assert ca.exists and ca.mode == 0o644
    result = app_psql(
        sh,
        f"host=localhost dbname={DB} user=chatflow_app sslmode=verify-full sslrootcert={TLS_DIR}/ca.crt",
        "SELECT ssl, version FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
    )
    assert result.rc == 0, result.stderr
    assert result.stdout.strip() in ("t|TLSv1.3", "t|TLSv1.2")
    # The name is checked: the same server under a name its certificate lacks is refused.
    mismatch = app_psql(
        sh,
        f"host=not-in-the-certificate.invalid hostaddr=127.0.0.1 dbname={DB} user=chatflow_app "
        f"sslmode=verify-full sslrootcert={TLS_DIR}/ca.crt",
    )
    assert mismatch.rc != 0 and 'does not match host name "not-in-the-certificate.invalid"' in mismatch.stderr


def test_pg10_private_keys_are_private(host):
    """PG-10 keys: the server's copy is postgres 0600, the CA's and source keys root 0600 in a 0700 directory."""
    key = host.file(f"{CONF_DIR}/server.key")
    assert key.user == "postgres" and key.mode == 0o600
    private = host.file(f"{TLS_DIR}/private")
    assert private.user == "root" and private.mode == 0o700
    for name in ("ca.key", "server.key"):
        source = host.file(f"{TLS_DIR}/private/{name}")
        assert source.user == "root" and source.mode == 0o600


# --- PostgreSQL: roles and privileges ----------------------------------------------------------


def test_pg11_only_postgres_holds_escalating_attributes(sh):
    """PG-11 no role but postgres has superuser/createrole/createdb/replication/bypassrls; BYPASSRLS only the
    allow-listed trusted roles (chatflow_database_rls_bypass_roles), never the request role."""
    others = " OR ".join(a for a in ESCALATING if a != "rolbypassrls")
    rows = sh.admin_sql(f"SELECT rolname FROM pg_roles WHERE rolname <> 'postgres' AND ({others})", db="postgres")
    assert rows == ""
    bypass = sh.admin_sql("SELECT rolname FROM pg_roles WHERE rolname <> 'postgres' AND rolbypassrls", db="postgres")
    assert set(bypass.split()) == RLS_BYPASS
    assert INPUTS["chatflow_database_request_role"] not in RLS_BYPASS
    assert sh.admin_sql("SELECT rolcanlogin FROM pg_roles WHERE rolname = 'chatflow_owner'") == "f"


def test_pg12_app_has_no_truncate_references_or_trigger(sh):
    """PG-12 the app role has no TRUNCATE, REFERENCES or TRIGGER on any table."""
    held = sh.admin_sql(
        "SELECT c.relname || ':' || p FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace, "
        "unnest(ARRAY['TRUNCATE', 'REFERENCES', 'TRIGGER']) p "
        "WHERE c.relkind IN ('r', 'p', 'v', 'm') AND n.nspname NOT IN ('pg_catalog', 'information_schema') "
        "AND has_table_privilege('chatflow_app', c.oid, p)"
    )
    assert held == ""
    truncate = sh.app_sql("TRUNCATE messages")
    assert truncate.rc != 0 and "permission denied for table messages" in truncate.stderr


def test_pg13_app_cannot_create_in_any_schema(sh):
    """PG-13 the app cannot create in any schema, nor temporary tables."""
    creatable = sh.admin_sql(
        "SELECT nspname FROM pg_namespace "
        "WHERE nspname NOT LIKE 'pg\\_%' AND has_schema_privilege('chatflow_app', oid, 'CREATE')"
    )
    assert creatable == ""
    for sql, message in (
        ("CREATE TABLE intruder (id int)", "permission denied for schema public"),
        ("CREATE SCHEMA intruder", "permission denied for database"),
        ("CREATE TEMP TABLE intruder (id int)", "permission denied to create temporary tables"),
        ("ALTER TABLE messages ADD COLUMN intruder int", "must be owner of table messages"),
    ):
        result = sh.app_sql(sql)
        assert result.rc != 0 and message in result.stderr, (sql, result.stderr)


def test_pg14_app_owns_nothing(sh):
    """PG-14 the login roles own nothing (objects, schemas, the database)."""
    owned = sh.admin_sql(
        "SELECT count(*) FROM pg_shdepend d JOIN pg_roles r ON r.oid = d.refobjid "
        f"WHERE d.deptype = 'o' AND r.rolname IN {LOGIN_ROLES}"
    )
    assert owned == "0"
    assert sh.admin_sql(f"SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = '{DB}'") == "chatflow_owner"


def test_pg15_app_connection_limit_fits_the_pool_with_headroom(sh):
    """PG-15 the app's connection limit fits its pool of 20 on DATABASE_URL and PgBouncer's pool of the same role,
    with headroom (chatflow_database_app_conn_limit)."""
    limit = int(sh.admin_sql("SELECT rolconnlimit FROM pg_roles WHERE rolname = 'chatflow_app'"))
    pool = int(sh.app("echo $DB_POOL_MAX").stdout)
    max_connections = int(sh.admin_sql("SHOW max_connections"))
    pooler = INPUTS["chatflow_pgbouncer_default_pool_size"] if INPUTS["chatflow_pgbouncer_enabled"] else 0
    assert pool == INPUTS["chatflow_app_env_db_pool_max"]
    assert pool + pooler < limit < max_connections


def test_pg16_app_timeouts_are_set_on_the_server(sh):
    """PG-16 statement and idle-in-transaction timeouts are the app role's server settings."""
    settings = sh.admin_sql(
        "SELECT array_to_string(setconfig, ',') FROM pg_db_role_setting s JOIN pg_roles r ON r.oid = s.setrole "
        "WHERE r.rolname = 'chatflow_app'"
    )
    assert "statement_timeout=30s" in settings and "idle_in_transaction_session_timeout=" in settings
    # Even a client that asks for nothing gets them.
    result = sh.app_sql("SHOW statement_timeout; SHOW idle_in_transaction_session_timeout")
    assert result.stdout.split() == ["30s", "1min"]


def test_pg17_audit_logs_are_append_only_for_the_app(sh):
    """PG-17 audit_logs is append-only for the app (chatflow_database_append_only_tables)."""
    ok = sh.app_sql("BEGIN; INSERT INTO audit_logs (action, resource_type) VALUES ('baseline', 'user'); ROLLBACK")
    assert ok.rc == 0, ok.stderr
    for sql in ("UPDATE audit_logs SET action = 'x'", "DELETE FROM audit_logs"):
        denied = sh.app_sql(sql)
        assert denied.rc != 0 and "permission denied for table audit_logs" in denied.stderr


def test_pg18_migration_history_is_not_writable_by_the_app(sh):
    """PG-18 the migration tracking table is out of the app's reach."""
    for sql in (
        "SELECT count(*) FROM chatflow_meta.schema_migrations",
        "INSERT INTO chatflow_meta.schema_migrations (version) VALUES (999)",
        "DELETE FROM chatflow_meta.schema_migrations",
    ):
        denied = sh.app_sql(sql)
        assert denied.rc != 0 and "permission denied for schema chatflow_meta" in denied.stderr, sql
    for privilege in ("INSERT", "UPDATE", "DELETE", "TRUNCATE"):
        assert priv(sh, "chatflow_app", "chatflow_meta.schema_migrations", privilege) == "f"


def test_pg19_public_has_no_connect_and_no_create(sh):
    """PG-19 PUBLIC has no CONNECT/TEMP on the database and no CREATE on any schema."""
    public_db = sh.admin_sql(
        f"SELECT count(*) FROM pg_database d, aclexplode(d.datacl) a WHERE d.datname = '{DB}' AND a.grantee = 0"
    )
    assert public_db == "0"
    public_create = sh.admin_sql(
        "SELECT nspname FROM pg_namespace n, aclexplode(n.nspacl) a WHERE a.grantee = 0 AND a.privilege_type = 'CREATE'"
    )
    assert public_create == ""
    # A role that was granted nothing has neither CONNECT nor TEMP (checked in a transaction rolled back).
    probe = sh.admin_sql(
        "BEGIN; CREATE ROLE baseline_probe LOGIN; "
        f"SELECT has_database_privilege('baseline_probe', '{DB}', 'CONNECT'), "
        f"has_database_privilege('baseline_probe', '{DB}', 'TEMP'), "
        "has_schema_privilege('baseline_probe', 'public', 'CREATE'); ROLLBACK"
    )
    assert probe.splitlines()[-2] == "f|f|f"


def test_pg20_default_privileges_cover_later_tables(sh):
    """PG-20 default privileges give the app (rw) and readonly (r) the tables of later migrations."""
    table = "baseline_later_table"
    sh.admin_sql(f"SET ROLE chatflow_owner; CREATE TABLE {table} (id int)")
    try:
        app = [priv(sh, "chatflow_app", table, p) for p in ("SELECT", "INSERT", "UPDATE", "DELETE", "TRUNCATE")]
        readonly = [priv(sh, "chatflow_readonly", table, p) for p in ("SELECT", "INSERT")]
        reads = sh.app_sql(f"SELECT count(*) FROM {table}")
    finally:
        sh.admin_sql(f"DROP TABLE {table}")
    assert app == ["t", "t", "t", "t", "f"]
    assert readonly == ["t", "f"]
    assert reads.rc == 0 and reads.stdout.strip() == "0"


# --- PostgreSQL: cluster, logging, files ------------------------------------------------------------


def test_pg21_data_checksums_on(sh):
    """PG-21 data checksums on (chatflow_postgresql_data_checksums, set when the cluster is created)."""
    assert sh.admin_sql("SHOW data_checksums") == "on"


def test_pg22_connections_failures_and_ddl_are_logged(host, sh):
    """PG-22 logging of connections, disconnections, failed logins and DDL with a useful line prefix."""
    for name, value in (("log_connections", "on"), ("log_disconnections", "on"), ("log_statement", "ddl")):
        assert sh.admin_sql(f"SHOW {name}") == value
    prefix = sh.admin_sql("SHOW log_line_prefix")
    for escape in ("%m", "%p", "%u", "%d", "%h"):
        assert escape in prefix
    before = int(host.check_output(f"wc -l < {PG_LOG}"))
    host.run("PGPASSWORD=wrong psql -X -h 127.0.0.1 -U chatflow_app -d chatflow_mvp -c 'SELECT 1'")
    sh.app_sql("CREATE TABLE intruder (id int)")
    sh.app_sql("SELECT 1")
    log = host.check_output(f"tail -n +{before + 1} {PG_LOG}")
    failed = (
        r'chatflow_app@chatflow_mvp from 127\.0\.0\.1 .*FATAL:  password authentication failed for user "chatflow_app"'
    )
    assert re.search(failed, log), log
    assert re.search(r"LOG:  statement: CREATE TABLE intruder", log), log
    assert "LOG:  connection authorized: user=chatflow_app" in log and "LOG:  disconnection: session time:" in log


def test_pg23_config_files_0640_and_data_directory_0700(host):
    """PG-23 config files 0640 and the data directory 0700, owned by postgres."""
    listing = host.check_output(f"find {CONF_DIR} -mindepth 1 -maxdepth 1 -type f -printf '%f %m %u\\n'")
    for entry in listing.splitlines():
        name, mode, user = entry.split()
        assert user == "postgres", entry
        assert int(mode, 8) & 0o037 == 0, entry  # no group write, nothing for others
    for name in ("postgresql.conf", "pg_hba.conf", "pg_ident.conf"):
        assert host.file(f"{CONF_DIR}/{name}").mode == 0o640
    data = host.file(DATA_DIR)
    assert data.user == "postgres" and data.mode == 0o700


# --- Redis ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("acl_file", "conf_file", "port"), REDIS_SERVERS)
def test_rd01_default_user_off_and_no_nopass_user(host, acl_file, conf_file, port):
    """RD-01 ACL file: default user off, no nopass user; a client without credentials gets NOAUTH."""
    acl = host.file(acl_file).content_string
    assert re.search(r"^user default off\b", acl, re.M)
    assert "nopass" not in acl
    assert host.file(conf_file).mode == 0o640 and host.file(acl_file).mode == 0o640
    anonymous = host.run(f"redis-cli -p {port} PING")
    assert "NOAUTH" in anonymous.stdout + anonymous.stderr


@pytest.mark.parametrize(("acl_file", "conf_file", "port"), REDIS_SERVERS)
def test_rd02_passwords_stored_as_hashes_only(host, acl_file, conf_file, port):
    """RD-02 passwords stored only as sha256 hashes: no `>password` rule, no requirepass in redis.conf."""
    assert port
    acl = host.file(acl_file).content_string
    for line in acl.splitlines():
        tokens = line.split()
        assert not any(t.startswith(">") for t in tokens), "clear-text password rule in the ACL file"
        if tokens[1] != "default":
            assert any(re.fullmatch(r"#[0-9a-f]{64}", t) for t in tokens), tokens[1]
    conf = host.file(conf_file).content_string
    assert not re.search(r"^\s*(requirepass|masterauth)\b", conf, re.M)


@pytest.mark.parametrize(
    "command",
    [
        ["FLUSHALL"],
        ["FLUSHDB"],
        ["CONFIG", "GET", "*"],
        ["CONFIG", "SET", "protected-mode", "no"],
        ["KEYS", "*"],
        ["DEBUG", "SLEEP", "0"],
        ["SHUTDOWN", "ABORT"],
        ["MONITOR"],
        ["EVAL", "return 1", "0"],
        ["SCRIPT", "FLUSH"],
        ["FUNCTION", "LIST"],
        ["ACL", "LIST"],
        ["MODULE", "LIST"],
    ],
)
def test_rd03_app_user_has_no_dangerous_or_admin_command(sh, command):
    """RD-03 the app user cannot run dangerous, admin or scripting commands: its ACL refuses them (on each Redis)."""
    for _acl, _conf, port in REDIS_SERVERS:
        dryrun = sh.admin_redis("ACL", "DRYRUN", "chatflow_app", *command, port=port)
        assert "This user has no permissions to run" in dryrun.stdout, (port, dryrun.stdout + dryrun.stderr)
    result = sh.app_redis(*command)
    # DEBUG is also switched off for everyone (enable-debug-command no), which answers first.
    assert "NOPERM" in result.stdout or "ERR DEBUG command not allowed" in result.stdout, command


@pytest.mark.parametrize(
    "command",
    [
        ["SET", "admin:x", "1"],
        ["GET", "users:1"],
        ["PUBLISH", "admin:alerts", "x"],
        ["SUBSCRIBE", "secrets"],
        ["PSUBSCRIBE", "*"],
        ["PSUBSCRIBE", "socket.io#/admin#*"],  # a namespace not in chatflow_redis_socketio_namespaces
        ["PUBLISH", "socket.io-admin#/#", "x"],
    ],
)
def test_rd04_app_user_is_limited_to_its_prefixes_and_channels(sh, command):
    """RD-04 the app user touches only its key prefixes and pub/sub channels (chatflow_redis_app_key_patterns)."""
    result = sh.app_redis(*command)
    assert "NOPERM" in result.stdout + result.stderr, command
    allowed = sh.app_redis("SET", "session:baseline", "1", "EX", "5")
    assert allowed.stdout.strip() == "OK"


def test_rd04b_socketio_adapter_channels_only(sh):
    """RD-04b the app user may use the Socket.IO Redis adapter's channels of its namespaces, nothing wider."""
    namespaces = defaults("chatflow_redis", overrides=inventory_vars())["chatflow_redis_socketio_namespaces"]
    for namespace in namespaces:
        allowed = (["PSUBSCRIBE", f"socket.io#{namespace}#*"], ["PUBLISH", f"socket.io-request#{namespace}#", "x"])
        for command in allowed:
            dryrun = sh.admin_redis("ACL", "DRYRUN", "chatflow_app", *command)
            assert dryrun.stdout.strip() == "OK", (command, dryrun.stdout)


def test_rd05_admin_user_for_operators(sh):
    """RD-05 an admin user for operators (chatflow_redis_admin_user) may run what the app may not."""
    whoami = sh.admin_redis("ACL", "WHOAMI")
    assert whoami.stdout.strip() == "chatflow_admin", whoami.stdout + whoami.stderr
    assert sh.admin_redis("CONFIG", "GET", "protected-mode").stdout.split() == ["protected-mode", "yes"]
    assert sh.admin_redis("ACL", "DRYRUN", "chatflow_admin", "FLUSHALL").stdout.strip() == "OK"


@pytest.mark.parametrize(("conf_file", "tls_port"), REDIS_TLS)
def test_rd05b_redis_tls_offers_only_tls12_aead_suites_and_tls13(host, tmp_path, conf_file, tls_port):
    """RD-05b Redis over TLS (a scenario with chatflow_redis_remote_cidrs), each server, offers TLS 1.2 with
    the suites of chatflow_tls_ciphers only, and TLS 1.3; nothing older (scanned with sslyze)."""
    if not REDIS_REMOTE:
        assert host.file(conf_file).content_string.count("tls-port") == 0
        return
    target = f"127.0.0.1:{tls_port}"
    protocols = ["--sslv2", "--sslv3", "--tlsv1", "--tlsv1_1", "--tlsv1_2", "--tlsv1_3"]
    run_in_netns(HOST_NAME, [str(SSLYZE), *protocols, "--json_out=scan.json", target], tmp_path)
    (result,) = json.loads((tmp_path / "scan.json").read_text())["server_scan_results"]
    kinds = ("ssl_2_0", "ssl_3_0", "tls_1_0", "tls_1_1", "tls_1_2", "tls_1_3")
    scans = {kind: result["scan_result"][f"{kind}_cipher_suites"]["result"] for kind in kinds}
    accepted = {
        kind: {c["cipher_suite"]["openssl_name"] for c in r["accepted_cipher_suites"]} for kind, r in scans.items()
    }
    assert not (accepted.pop("tls_1_2") - set(INPUTS["chatflow_tls_ciphers"].split(":")))
    assert accepted.pop("tls_1_3")
    assert all(not suites for suites in accepted.values()), accepted


def test_rd06_protected_mode_and_loopback_bind(host):
    """RD-06 protected mode on; bound to loopback (plus the host's address only when remote clients are configured)."""
    conf = host.file("/etc/redis/redis.conf").content_string
    assert re.search(r"^protected-mode yes$", conf, re.M)
    bind = re.search(r"^bind (.+)$", conf, re.M).group(1).split()
    addresses = [ipaddress.ip_address(a.lstrip("-")) for a in bind]
    if not REDIS_REMOTE:
        assert all(a.is_loopback for a in addresses), bind
        assert not host.socket("tcp://0.0.0.0:6379").is_listening
    else:
        assert any(a.is_loopback for a in addresses)
        assert "0.0.0.0" not in bind and "::" not in bind


def test_rd07_config_and_acl_files_not_world_readable(host):
    """RD-07 redis.conf and the ACL file are not world-readable."""
    for path in ("/etc/redis/redis.conf", "/etc/redis/users.acl"):
        f = host.file(path)
        assert f.user == "redis" and f.mode & 0o007 == 0, path
    assert host.file("/etc/redis").mode & 0o007 == 0


def test_rd08_health_check_is_ping(sh):
    """RD-08 health checks use PING (the role's own check does too)."""
    assert sh.app_redis("PING").stdout.strip() == "PONG"


# --- Host ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("process,user", [("postgres", "postgres"), ("redis-server", "redis")])
def test_ho01_daemons_do_not_run_as_root(host, process, user):
    """HO-01 neither daemon runs as root."""
    procs = host.process.filter(comm=process)
    assert procs
    assert {p.user for p in procs} == {user}


def nft_sets(table: str) -> dict[str, set]:
    sets = {}
    for name, body in re.findall(r"set (\w+) \{(.*?)\n\t\}", table, re.S):
        elements = re.search(r"elements = \{(.*?)\}", body, re.S)
        sets[name] = {ipaddress.ip_network(e.strip()) for e in elements.group(1).split(",")} if elements else set()
    return sets


def test_ho02_firewall_admits_database_ports_only_from_configured_networks(host, sh):
    """HO-02 nftables: 5432 and the Redis ports only from loopback and the configured CIDRs, else dropped."""
    assert host.service("chatflow-firewall").is_enabled
    table = host.check_output("nft list table inet chatflow")
    plain = [INPUTS["chatflow_redis_port"]]
    tls = [INPUTS["chatflow_redis_tls_port"]]
    if INPUTS["chatflow_redis_cache_enabled"]:
        plain.append(INPUTS["chatflow_redis_cache_port"])
        tls.append(INPUTS["chatflow_redis_cache_tls_port"])
    pg_port = INPUTS["chatflow_postgresql_port"]
    monitoring = (
        [int(p) for p in INPUTS["chatflow_monitoring_ports"].values()] if INPUTS["chatflow_monitoring_enabled"] else []
    )
    dropped = re.search(r"tcp dport \{ ([0-9, ]+) \} drop", table)
    assert dropped, table
    assert {int(p) for p in dropped.group(1).split(", ")} == {pg_port, *plain, *tls, *monitoring}, table
    assert 'iif "lo" accept' in table
    sets = nft_sets(table)
    assert sets[f"postgresql_{pg_port}_v4"] | sets[f"postgresql_{pg_port}_v6"] == PG_REMOTE
    for name, port in zip(("redis", "redis_cache"), plain, strict=False):
        assert sets[f"{name}_{port}_v4"] | sets[f"{name}_{port}_v6"] == set(), f"plain Redis port {port}: loopback only"
    for name, port in zip(("redis_tls", "redis_cache_tls"), tls, strict=False):
        assert sets[f"{name}_{port}_v4"] | sets[f"{name}_{port}_v6"] == REDIS_REMOTE
    # HO-02b the exporters and the host's Prometheus: the monitoring networks only.
    for port in monitoring:
        admitted = sets[f"monitoring_{port}_v4"] | sets[f"monitoring_{port}_v6"]
        assert admitted == {ipaddress.ip_network(c) for c in INPUTS["chatflow_monitoring_cidrs"]}, port


def test_ho03_env_files_private_to_the_app_user(host):
    """HO-03 the env files are 0600 and owned by the app user."""
    for directory in ENV_DIRS:
        env = host.file(f"{directory}/.env.database")
        assert env.user == APP_USER and env.group == APP_USER and env.mode == 0o600, directory
