"""Row-level security (migration R__05) on a real PostgreSQL: who sees and changes what.

The migrations are applied with chatflow.db.pg_migrate as the provisioning applies them; a
request role (NOBYPASSRLS) and a service role (BYPASSRLS) get the grants the provisioning gives
(roles/chatflow_database: its tables and the functions of __chatflow_database_rls_functions).
Two workspaces: W (alice owner, bob, charlie), W2 (charlie); channels #general (public, W),
#secret (private, W, alice only), #w2 (public, W2); DMs alice -> bob; a notification each.
"""

from __future__ import annotations

import re
from pathlib import Path

import psycopg2
import pytest
import yaml
from pgtest import PORT, ROOT, fresh_database, psql, run_module

MIGRATIONS = ROOT / "roles/chatflow_database/files/migrations"
VARS = yaml.safe_load((ROOT / "roles/chatflow_database/vars/main.yml").read_text())
FUNCTIONS = [f.replace(":", ",") for f in VARS["__chatflow_database_rls_functions"]]
TABLES = [
    *("users", "workspaces", "workspace_members", "channels", "channel_members", "messages"),
    *("reactions", "notifications", "direct_messages", "audit_logs", "files"),
]
IDS = {
    "alice": "00000000-0000-0000-0000-00000000000a",
    "bob": "00000000-0000-0000-0000-00000000000b",
    "charlie": "00000000-0000-0000-0000-00000000000c",
    "W": "00000000-0000-0000-0000-0000000000f1",
    "W2": "00000000-0000-0000-0000-0000000000f2",
    "general": "00000000-0000-0000-0000-0000000000c1",
    "secret": "00000000-0000-0000-0000-0000000000c2",
    "w2": "00000000-0000-0000-0000-0000000000c3",
}
DATA = """
INSERT INTO users (id, email, username, password_hash) VALUES
  ('{alice}', 'a@x.test', 'alice', 'x'), ('{bob}', 'b@x.test', 'bob', 'x'), ('{charlie}', 'c@x.test', 'charlie', 'x');
INSERT INTO workspaces (id, name, owner_id) VALUES ('{W}', 'W', '{alice}'), ('{W2}', 'W2', '{charlie}');
INSERT INTO workspace_members (workspace_id, user_id, role) VALUES
  ('{W}', '{alice}', 'owner'), ('{W}', '{bob}', 'member'), ('{W}', '{charlie}', 'member'),
  ('{W2}', '{charlie}', 'owner');
INSERT INTO channels (id, workspace_id, name, type, creator_id) VALUES
  ('{general}', '{W}', 'general', 'public', '{alice}'), ('{secret}', '{W}', 'secret', 'private', '{alice}'),
  ('{w2}', '{W2}', 'w2', 'public', '{charlie}');
INSERT INTO channel_members (channel_id, user_id, role) VALUES
  ('{general}', '{alice}', 'owner'), ('{general}', '{bob}', 'member'), ('{secret}', '{alice}', 'owner'),
  ('{w2}', '{charlie}', 'owner');
INSERT INTO messages (channel_id, user_id, content) VALUES
  ('{general}', '{alice}', 'hello everyone'), ('{secret}', '{alice}', 'the secret launch plan'),
  ('{w2}', '{charlie}', 'other workspace news');
INSERT INTO direct_messages (conversation_id, sender_id, recipient_id, content) VALUES
  (gen_random_uuid(), '{alice}', '{bob}', 'psst bob');
INSERT INTO notifications (user_id, type, actor_id) VALUES
  ('{alice}', 'mention', '{bob}'), ('{bob}', 'dm', '{alice}'), ('{charlie}', 'mention', '{alice}');
REFRESH MATERIALIZED VIEW channel_stats;
"""


@pytest.fixture(scope="module")
def db(cluster):
    fresh_database(cluster)
    result = run_module("pg_migrate", cluster, path=str(MIGRATIONS), apply_role="chatflow_owner")
    assert result["rc"] == 0, result.get("msg")
    roles = {"rls_request": "NOBYPASSRLS", "rls_service": "BYPASSRLS"}
    for role, flag in roles.items():
        psql(cluster, f"DROP ROLE IF EXISTS {role}; CREATE ROLE {role} LOGIN {flag}", db="postgres")
        psql(
            cluster,
            f"GRANT USAGE ON SCHEMA public TO {role}; "
            f"GRANT SELECT, INSERT, UPDATE, DELETE ON {', '.join(TABLES)} TO {role}; "
            f"GRANT EXECUTE ON FUNCTION {', '.join(FUNCTIONS)} TO {role}",
        )
    psql(cluster, "GRANT SELECT ON channel_stats TO rls_service")
    psql(cluster, "SET ROLE chatflow_owner; " + DATA.format(**IDS))
    return cluster


@pytest.fixture
def as_role(db):
    """A function: a cursor of a new connection as `role` (autocommit off: each test's own transaction)."""
    conns = []

    def connect(role: str):
        conn = psycopg2.connect(host=str(db), port=PORT, user=role, dbname="chatflow_mvp")
        conns.append(conn)
        return conn.cursor()

    yield connect
    for conn in conns:
        conn.close()


def acting(cur, user: str | None):
    """Start a transaction acting for user (None: no app.user_id; '': empty, as a reused pooled connection)."""
    cur.connection.rollback()
    if user is not None:
        cur.execute("SELECT set_config('app.user_id', %s, true)", (IDS.get(user, user),))
    return cur


def rows(cur, sql: str, *args) -> list:
    cur.execute(sql, args)
    return cur.fetchall()


def names(cur, table: str, column: str = "name") -> set[str]:
    return {r[0] for r in rows(cur, f"SELECT {column} FROM {table}")}


def test_every_table_has_row_level_security_and_policies(db):
    out = psql(
        db,
        "SELECT c.relname || ':' || c.relrowsecurity || ':' || count(p.polname) FROM pg_class c "
        "LEFT JOIN pg_policy p ON p.polrelid = c.oid WHERE c.relnamespace = 'public'::regnamespace "
        "AND c.relkind = 'r' GROUP BY c.relname, c.relrowsecurity ORDER BY 1",
    ).splitlines()
    found = {line.split(":")[0]: line.split(":")[1:] for line in out}
    assert set(found) == set(TABLES)
    for table, (rls, policies) in found.items():
        assert rls == "true" and int(policies) >= 1, (table, rls, policies)


def test_security_definer_functions_pin_search_path_and_not_public(db):
    out = psql(
        db,
        "SELECT p.proname || '|' || coalesce(array_to_string(p.proconfig, ','), '') || '|' "
        "|| has_function_privilege('public', p.oid, 'EXECUTE') FROM pg_proc p "
        "WHERE p.pronamespace = 'public'::regnamespace AND p.prosecdef ORDER BY 1",
    ).splitlines()
    assert len(out) >= 7
    for line in out:
        name, config, public = line.split("|")
        assert config == "search_path=pg_catalog, public", (name, config)
        assert public == "false", f"{name} is executable by PUBLIC"


def test_a_user_reads_its_workspaces_and_readable_channels_only(as_role):
    cur = as_role("rls_request")
    assert names(acting(cur, "bob"), "channels") == {"general"}
    assert names(acting(cur, "alice"), "channels") == {"general", "secret"}
    assert names(acting(cur, "charlie"), "channels") == {"general", "w2"}  # public in both of its workspaces
    assert names(acting(cur, "bob"), "workspaces") == {"W"}
    assert names(acting(cur, "bob"), "users", "username") == {"alice", "bob", "charlie"}
    assert names(acting(cur, "alice"), "users", "username") == {"alice", "bob", "charlie"}
    assert names(acting(cur, "bob"), "messages", "content") == {"hello everyone"}


def test_a_user_cannot_read_or_write_a_private_channel_of_another(as_role):
    cur = acting(as_role("rls_request"), "bob")
    assert rows(cur, "SELECT count(*) FROM messages WHERE channel_id = %s", IDS["secret"]) == [(0,)]
    assert rows(cur, "SELECT count(*) FROM channel_members WHERE channel_id = %s", IDS["secret"]) == [(0,)]
    with pytest.raises(psycopg2.errors.InsufficientPrivilege, match="row-level security"):
        cur.execute(
            "INSERT INTO messages (channel_id, user_id, content) VALUES (%s, %s, 'let me in')",
            (IDS["secret"], IDS["bob"]),
        )
    cur = acting(cur, "bob")
    cur.execute("UPDATE channels SET name = 'pwned' WHERE id = %s", (IDS["secret"],))
    assert cur.rowcount == 0
    cur.execute("DELETE FROM messages WHERE channel_id = %s", (IDS["secret"],))
    assert cur.rowcount == 0
    # Joining a private channel is not allowed; a public one of its workspace is.
    with pytest.raises(psycopg2.errors.InsufficientPrivilege):
        cur.execute("INSERT INTO channel_members (channel_id, user_id) VALUES (%s, %s)", (IDS["secret"], IDS["bob"]))
    cur = acting(cur, "charlie")
    cur.execute("INSERT INTO channel_members (channel_id, user_id) VALUES (%s, %s)", (IDS["general"], IDS["charlie"]))
    assert cur.rowcount == 1


def test_a_user_posts_only_as_itself_into_its_channels(as_role):
    cur = acting(as_role("rls_request"), "bob")
    cur.execute(
        "INSERT INTO messages (channel_id, user_id, content) VALUES (%s, %s, 'hi') RETURNING id",
        (IDS["general"], IDS["bob"]),
    )
    assert cur.rowcount == 1
    with pytest.raises(psycopg2.errors.InsufficientPrivilege):
        cur.execute(
            "INSERT INTO messages (channel_id, user_id, content) VALUES (%s, %s, 'as alice')",
            (IDS["general"], IDS["alice"]),
        )


def test_direct_messages_and_notifications_are_their_users_own(as_role):
    cur = as_role("rls_request")
    assert names(acting(cur, "alice"), "direct_messages", "content") == {"psst bob"}
    assert names(acting(cur, "bob"), "direct_messages", "content") == {"psst bob"}
    assert names(acting(cur, "charlie"), "direct_messages", "content") == set()
    for user in ("alice", "bob", "charlie"):
        assert rows(acting(cur, user), "SELECT DISTINCT user_id::text FROM notifications") == [(IDS[user],)]
    cur = acting(cur, "charlie")
    cur.execute("UPDATE notifications SET is_read = true WHERE user_id = %s", (IDS["bob"],))
    assert cur.rowcount == 0
    with pytest.raises(psycopg2.errors.InsufficientPrivilege):
        cur.execute(
            "INSERT INTO direct_messages (conversation_id, sender_id, recipient_id, content) "
            "VALUES (gen_random_uuid(), %s, %s, 'forged')",
            (IDS["alice"], IDS["charlie"]),
        )


@pytest.mark.parametrize("user", [None, ""])
def test_no_user_sees_nothing_user_scoped(as_role, user):
    """Missing or empty app.user_id (a reused pooled connection): no rows, no error."""
    cur = acting(as_role("rls_request"), user)
    for table in TABLES:
        if table == "audit_logs":
            continue  # no SELECT policy at all: a request never reads the audit log
        assert rows(cur, f"SELECT count(*) FROM {table}") == [(0,)], table
    assert rows(cur, "SELECT count(*) FROM my_channel_stats()") == [(0,)]
    assert rows(cur, "SELECT count(*) FROM search_messages('hello')") == [(0,)]


def test_the_user_ends_with_the_transaction(as_role):
    cur = acting(as_role("rls_request"), "alice")
    assert names(cur, "channels") == {"general", "secret"}
    cur.connection.commit()
    assert rows(cur, "SELECT count(*) FROM channels") == [(0,)]


def test_channel_stats_only_through_the_function(as_role):
    cur = acting(as_role("rls_request"), "bob")
    with pytest.raises(psycopg2.errors.InsufficientPrivilege):
        cur.execute("SELECT * FROM channel_stats")
    cur = acting(cur, "bob")
    assert names(cur, "my_channel_stats()") == {"general"}


def test_search_finds_only_in_the_users_channels(as_role):
    cur = as_role("rls_request")
    assert len(rows(acting(cur, "alice"), "SELECT * FROM search_messages('secret launch')")) == 1
    assert rows(acting(cur, "bob"), "SELECT * FROM search_messages('secret launch')") == []
    assert len(rows(acting(cur, "alice"), "SELECT * FROM search_messages_fuzzy('%%launch%%')")) == 1
    assert rows(acting(cur, "bob"), "SELECT * FROM search_messages_fuzzy('%%launch%%')") == []


def test_the_service_role_sees_everything_without_a_user(as_role):
    """The trusted side (BYPASSRLS, the app role): seed 000's checks run as written."""
    cur = as_role("rls_service")
    assert rows(cur, "SELECT count(*) FROM users") == [(3,)]
    assert rows(cur, "SELECT count(*) FROM channel_stats") == [(3,)]


def test_the_design_matrix_names_every_policy(db):
    """docs/design.md's matrix lists each table's policies by command, as pg_policies has them."""
    text = (ROOT / "docs/design.md").read_text()
    section = text[text.index("### Row-level security") :]
    documented = {}
    for line in section.splitlines():
        cells = [c.strip(" `") for c in line.split("|")[1:-1]]
        if len(cells) >= 5 and cells[0] in TABLES:
            commands = ("SELECT", "INSERT", "UPDATE", "DELETE")
            documented[cells[0]] = {cmd: not cells[i + 1].startswith("-") for i, cmd in enumerate(commands)}
    live = {}
    for line in psql(db, "SELECT tablename || ':' || cmd FROM pg_policies WHERE schemaname = 'public'").splitlines():
        table, cmd = line.split(":")
        live.setdefault(table, dict.fromkeys(("SELECT", "INSERT", "UPDATE", "DELETE"), False))[cmd] = True
    assert documented == live


def test_a_dropped_or_altered_policy_is_repaired(db):
    psql(
        db,
        "DROP POLICY messages_select ON messages; ALTER POLICY notifications_select ON notifications USING (true); "
        "ALTER TABLE direct_messages DISABLE ROW LEVEL SECURITY",
    )
    result = run_module("pg_migrate", db, path=str(MIGRATIONS), apply_role="chatflow_owner", force_drift_check=True)
    assert result["rc"] == 0, result.get("msg")
    repaired = " ".join(str(d) for d in result["drift"])
    for name in ("messages_select", "notifications_select", "direct_messages"):
        assert name in repaired, name
    policy = psql(db, "SELECT qual FROM pg_policies WHERE policyname = 'notifications_select'")
    assert re.search(r"user_id = \( SELECT app_user_id\(\)", policy), policy
    assert psql(db, "SELECT relrowsecurity FROM pg_class WHERE relname = 'direct_messages'") == "t"


def test_schema_file_holds_the_policies():
    schema = (ROOT / "roles/chatflow_database/files/schema.sql").read_text()
    assert schema.count("CREATE POLICY") == Path(MIGRATIONS / "R__05_row_level_security.sql").read_text().count(
        "CREATE POLICY"
    )
