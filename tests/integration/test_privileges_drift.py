"""The privilege pre-check (roles/chatflow_database/files/privileges_drift.sql) against postgresql_privs itself.

The role runs community.postgresql.postgresql_privs only for the items of its list that the
pre-check reports.  On the project's schema (the migrations applied by chatflow.db.pg_migrate)
and the role's own list (vars/main.yml rendered by Ansible's templating with the tables found),
doing so must leave exactly the privileges that running the module for every item leaves: on a
fresh database and after each drift made by hand; then the pre-check reports nothing.  (Like
the module, it leaves a grant option on a privilege the role grants: not a drift here.)
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import psycopg
import pytest
from ansible.parsing.dataloader import DataLoader
from ansible.template import Templar
from pgtest import PORT, ROOT, fresh_database, nologin_role, psql, run_module, run_module_file

ROLE = ROOT / "roles/chatflow_database"
SQL = (ROLE / "files/privileges_drift.sql").read_text()
PRIVS_MODULE = "ansible_collections.community.postgresql.plugins.modules.postgresql_privs"
PRIVS = Path(importlib.util.find_spec(PRIVS_MODULE).origin)
DB = "chatflow_privs"


def role_variables() -> tuple[DataLoader, dict]:
    """The defaults and vars the role sees (chatflow_common's and its own)."""
    loader = DataLoader()
    variables = {}
    for path in ("chatflow_common/defaults", "chatflow_database/defaults", "chatflow_database/vars"):
        variables.update(loader.load_from_file(str(ROOT / "roles" / path / "main.yml"), trusted_as_template=True))
    return loader, variables


def login_roles() -> list[str]:
    """The names of the role's login roles (the grants name each of them)."""
    loader, variables = role_variables()
    templar = Templar(loader=loader, variables=variables)
    return [templar.template(role["name"]) for role in variables["__chatflow_database_login_roles"]]


def role_grants(sock: Path) -> list[dict]:
    """The role's __chatflow_database_grants for the tables this database has."""
    loader, variables = role_variables()
    tables = psql(
        sock,
        "SELECT string_agg(relname, ',' ORDER BY relname), "
        "coalesce(string_agg(relname, ',' ORDER BY relname) FILTER (WHERE relrowsecurity), '') "
        "FROM pg_class WHERE relnamespace = 'public'::regnamespace AND relkind IN ('r', 'p')",
        db=DB,
    ).split("|")
    variables.update(chatflow_database_name=DB)
    variables["__chatflow_database_tables"] = {
        "query_result": [{"tables": tables[0].split(","), "rls_tables": [t for t in tables[1].split(",") if t]}]
    }
    return Templar(loader=loader, variables=variables).template(variables["__chatflow_database_grants"])


def precheck(sock: Path, grants: list[dict]) -> list[int]:
    with psycopg.connect(host=str(sock), port=PORT, user="postgres", dbname=DB) as conn:
        return conn.execute(SQL, {"grants": json.dumps(grants)}).fetchone()[0]


PRIVILEGES = """
WITH acl (kind, name, acl) AS (
  SELECT 'database', datname::text, coalesce(datacl, acldefault('d', datdba)) FROM pg_database
  UNION ALL SELECT 'schema', nspname::text, coalesce(nspacl, acldefault('n', nspowner)) FROM pg_namespace
  UNION ALL SELECT 'relation', oid::regclass::text, coalesce(relacl, acldefault('r', relowner))
              FROM pg_class WHERE relkind IN ('r', 'v', 'm', 'p', 'f', 'S')
  UNION ALL SELECT 'function', oid::regprocedure::text, coalesce(proacl, acldefault('f', proowner)) FROM pg_proc
  UNION ALL SELECT 'default ' || defaclobjtype::text,
                   defaclrole::regrole::text || ' in ' || defaclnamespace::regnamespace::text, defaclacl
              FROM pg_default_acl)
SELECT kind, name, a.grantee::regrole::text, a.privilege_type, a.is_grantable
  FROM acl CROSS JOIN LATERAL aclexplode(CASE WHEN cardinality(acl) > 0 THEN acl END) a
 ORDER BY 1, 2, 3, 4
"""


def privileges(sock: Path) -> list[tuple]:
    """Every privilege held in the database (the built-in default where an ACL is NULL)."""
    with psycopg.connect(host=str(sock), port=PORT, user="postgres", dbname=DB) as conn:
        return conn.execute(PRIVILEGES).fetchall()


def run_privs(sock: Path, grants: list[dict], check: bool = False) -> list[int]:
    """Run postgresql_privs for each item as the role calls it; the indexes of those that changed (or would)."""

    def run(item: dict) -> dict:
        args = {key: item[key] for key in ("type", "objs", "schema", "privs", "roles", "target_roles") if key in item}
        return run_module_file(PRIVS, sock, check, login_db=DB, state=item.get("state", "present"), **args)

    # (One at a time: concurrent GRANTs on one object fail with "tuple concurrently updated".)
    results = [run(item) for item in grants]
    failed = [(i, r.get("msg")) for i, r in enumerate(results) if r["rc"] != 0]
    assert not failed, failed
    return [i for i, r in enumerate(results) if r["changed"]]


def repair(sock: Path, grants: list[dict]) -> list[int]:
    """What the role does: the pre-check, then postgresql_privs for the items it reports."""
    drifted = precheck(sock, grants)
    run_privs(sock, [grants[i] for i in drifted])
    return drifted


@pytest.fixture(scope="module")
def grants(cluster):
    fresh_database(cluster, name=DB)
    roles = login_roles()
    assert "chatflow_app" in roles and "chatflow_monitor" in roles, roles
    for role in roles:
        nologin_role(cluster, role)
    result = run_module(
        "pg_migrate", cluster, login_db=DB, path=str(ROLE / "files/migrations"), apply_role="chatflow_owner"
    )
    assert result["rc"] == 0, result.get("msg")
    return role_grants(cluster)


def test_the_list_covers_every_kind_of_object(grants):
    kinds = {(g["type"], g.get("state", "present")) for g in grants}
    assert {("database", "present"), ("schema", "absent"), ("table", "absent"), ("function", "present")} <= kinds
    assert ("default_privs", "present") in kinds


@pytest.fixture(scope="module")
def granted(cluster, grants):
    """The privileges of the fresh database after the role's way (pre-check, then only what it reports)."""
    assert repair(cluster, grants), "a fresh database must lack some grants"
    return privileges(cluster)


def test_the_reported_items_grant_what_every_item_would(cluster, grants, granted):
    run_privs(cluster, grants)
    assert privileges(cluster) == granted
    assert precheck(cluster, grants) == []


@pytest.mark.parametrize(
    "drift",
    [
        "REVOKE CONNECT ON DATABASE {db} FROM chatflow_readonly",
        "REVOKE USAGE ON SCHEMA public FROM chatflow_request",
        "REVOKE DELETE ON messages FROM chatflow_app",
        "REVOKE SELECT ON channel_stats FROM chatflow_readonly",
        "REVOKE EXECUTE ON FUNCTION search_messages(text, integer) FROM chatflow_request",
        "ALTER DEFAULT PRIVILEGES FOR ROLE chatflow_owner IN SCHEMA public REVOKE UPDATE ON SEQUENCES "
        "FROM chatflow_app",
        "GRANT TRUNCATE ON users TO chatflow_app",
        "GRANT SELECT ON channel_stats TO chatflow_request",
        "GRANT UPDATE ON audit_logs TO chatflow_app",
        "GRANT INSERT ON messages TO chatflow_readonly",
        "GRANT CREATE ON SCHEMA public TO PUBLIC",
        "GRANT SELECT ON ALL TABLES IN SCHEMA chatflow_meta TO chatflow_app",
        "GRANT USAGE ON SCHEMA chatflow_meta TO PUBLIC",
        "GRANT INSERT ON messages TO chatflow_readonly WITH GRANT OPTION",
    ],
)
def test_each_drift_is_reported_and_repaired(cluster, grants, granted, drift):
    psql(cluster, drift.format(db=DB), db=DB)
    assert privileges(cluster) != granted, f"not a drift: {drift}"
    assert repair(cluster, grants), f"the pre-check missed: {drift}"
    assert privileges(cluster) == granted
    assert precheck(cluster, grants) == []


def test_a_missing_object_is_reported_so_the_module_names_it(cluster, grants):
    broken = [
        *grants,
        {"type": "table", "schema": "public", "objs": "no_such_table", "privs": "SELECT", "roles": "chatflow_app"},
    ]
    assert precheck(cluster, broken) == [len(grants)]
