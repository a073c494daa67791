#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: ChatFlow platform team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: pg_migrate
short_description: Versioned PostgreSQL migrations with rollback, repeatables and drift repair
version_added: "0.2.0"
description:
  - Applies the versioned SQL files of a directory (C(V<n>__<description>.sql)) once each, in version order,
    each in its own transaction together with its tracking row, under a session-level advisory lock so that
    concurrent runs apply each file once.
  - A file whose first comment lines hold C(-- chatflow:no-transaction) runs outside a transaction (for
    C(CREATE INDEX CONCURRENTLY)); it must hold one statement.
  - Repeatable files (C(R__<description>.sql)) run after the versioned ones, in name order, whenever their
    checksum differs from the recorded one.
  - Rolls back to a target version with the down files (C(U<n>__<description>.sql)), highest first, each in
    a transaction that also removes its tracking row.
  - After migrating, compares the live schema with what the migrations define (a shadow schema built in the
    same transaction) and restores what is missing or different (tables, columns, constraints, indexes
    including invalid ones, views and materialized views, functions, triggers, policies, extensions, owners,
    the privileges the migrations give and none to PUBLIC that they do not), without touching rows.  The
    recorded catalog fingerprint lets a rerun with nothing to do skip that comparison.
  - Adopts a database built without the runner (C(baseline_version)); the versions up to it are recorded as
    applied without running, the rest run, and the drift repair brings the schema to what the files define.
  - In check mode everything runs in one transaction that is rolled back, so the result lists what a real
    run would apply, re-apply and repair, and nothing is written.
options:
  path:
    description:
      - Directory of the migration files on the managed host. Files not ending in C(.sql) are ignored.
      - Exactly one of I(path) and I(files) is required.
    type: path
  files:
    description:
      - The migration files as a mapping of file name to content, for example read on the control node with
        C(lookup('ansible.builtin.file', ..., rstrip=false)), so that nothing is copied to the host and check
        mode sees files the host has never had.
      - Exactly one of I(path) and I(files) is required.
    type: dict
  login_db:
    description: Database to migrate.
    type: str
    required: true
    aliases: [db]
  state:
    description:
      - C(migrated) applies pending files up to I(target) and repairs drift.
      - C(rolled_back) runs the down files of every applied version above I(target).
    type: str
    choices: [migrated, rolled_back]
    default: migrated
  target:
    description: Version to migrate or roll back to; C(latest) (migrate only) or C(0) (roll back everything).
    type: str
    default: latest
  apply_role:
    description: Role to C(SET ROLE) to while files and repairs run, so that it owns what they create.
    type: str
  applied_by:
    description: Name recorded as C(applied_by) in the tracking table (defaults to the session user).
    type: str
  schema:
    description: The schema the migrations build (they must not qualify their objects with it).
    type: str
    default: public
  tracking_schema:
    description: Schema of the tracking tables, created when missing, not readable by PUBLIC.
    type: str
    default: chatflow_meta
  tracking_table:
    description: Name of the tracking table.
    type: str
    default: schema_migrations
  baseline_version:
    description:
      - Adopt a database whose I(schema) already has tables but which has no migration history; the versions
        up to this one are recorded as applied without running.  Without it such a database is refused.
    type: int
  repair_checksums:
    description: Accept applied files whose checksum changed, recording the new checksums instead of failing.
    type: bool
    default: false
  out_of_order:
    description: Allow a pending version lower than the highest applied one.
    type: bool
    default: false
  drift:
    description:
      - C(repair) restores drifted objects; C(report) lists them without changing anything; C(ignore) skips
        the comparison.
    type: str
    choices: [repair, report, ignore]
    default: repair
  force_drift_check:
    description: Compare with the shadow schema even when the catalog fingerprint matches the record.
    type: bool
    default: false
  rewrite:
    description:
      - Also run the repairs that rewrite a table under an exclusive lock (a column whose type drifted).
      - Without it they are reported in C(deferred) with their statements and a warning, on every run until
        done, and the other repairs go ahead. Adopting a database (I(baseline_version)) runs them.
    type: bool
    default: false
    version_added: "0.4.0"
  seed:
    description:
      - Data files as a mapping of file name to content, run after the migrations and the drift repair of every
        C(state=migrated) run, in name order, in one transaction, as I(apply_role), with C(search_path) set to
        I(schema).
      - They must be rerunnable (C(ON CONFLICT), C(WHERE NOT EXISTS), an C(UPDATE) only of rows that differ).
        The run reports C(changed) when they write rows, so a deleted seed row comes back and a second run
        writes nothing.
      - Omit it to insert no data.
    type: dict
    version_added: "0.5.0"
  seed_settings:
    description:
      - Custom settings (C(prefix.name) => value) set for the seed transaction with C(set_config), for the seed
        to read with C(current_setting()), for example passwords it hashes. Values are never logged or returned.
    type: dict
    default: {}
    version_added: "0.5.0"
  lock_timeout:
    description: C(lock_timeout) of each transaction, so that a busy table fails the run instead of stalling the app.
    type: str
    default: 10s
  lock_wait:
    description: Seconds to wait for another migration run to finish before failing.
    type: int
    default: 300
extends_documentation_fragment:
  - community.postgresql.postgres
notes:
  - Connects as I(login_user) (C(postgres) over the local socket, peer authentication, by default).
  - Needs psycopg2 (or psycopg 3, which community.postgresql prefers when both are present) on the managed host.
  - The repair never drops what the migrations do not define; such objects are returned as C(unmanaged).
  - A column type repair converts in place (C(USING col::type)), with C(TimeZone) set to UTC.
seealso:
  - module: chatflow.db.host_fingerprint
author:
  - ChatFlow platform team
"""

EXAMPLES = r"""
- name: Migrate chatflow_mvp with the files of the control node (nothing is copied)
  become: true
  become_user: postgres
  chatflow.db.pg_migrate:
    login_db: chatflow_mvp
    files: "{{ dict(paths | map('basename') | zip(query('ansible.builtin.file', *paths, rstrip=false))) }}"
    apply_role: chatflow_owner
  vars:
    paths: "{{ query('ansible.builtin.fileglob', 'files/migrations/*.sql') | sort }}"

- name: Migrate chatflow_mvp to the latest version and repair drift
  become: true
  become_user: postgres
  chatflow.db.pg_migrate:
    login_db: chatflow_mvp
    path: /var/lib/chatflow/sql/migrations
    apply_role: chatflow_owner
    baseline_version: 1
  register: migration

- name: Migrate, then insert the seed rows that are missing, handing their passwords to the SQL as settings
  become: true
  become_user: postgres
  chatflow.db.pg_migrate:
    login_db: chatflow_mvp
    path: /var/lib/chatflow/sql/migrations
    apply_role: chatflow_owner
    seed:
      seed.sql: "{{ lookup('ansible.builtin.file', 'files/seed.sql', rstrip=false) }}"
    seed_settings:
      chatflow.seed_password_alice: "{{ alice_password }}"
  no_log: true

- name: Roll back to version 2
  become: true
  become_user: postgres
  chatflow.db.pg_migrate:
    login_db: chatflow_mvp
    path: /var/lib/chatflow/sql/migrations
    apply_role: chatflow_owner
    state: rolled_back
    target: "2"

- name: Only report drift (read-only)
  become: true
  become_user: postgres
  chatflow.db.pg_migrate:
    login_db: chatflow_mvp
    path: /var/lib/chatflow/sql/migrations
    drift: report
    force_drift_check: true
  check_mode: true
"""

RETURN = r"""
applied:
  description: >-
    Files run (in check mode, that would run), with version, description, script, checksum, type and
    execution_ms.
  returned: always
  type: list
  elements: dict
repeatables:
  description: Scripts of the repeatable files (re-)applied.
  returned: always
  type: list
  elements: str
rolled_back:
  description: Down files run, highest version first.
  returned: always
  type: list
  elements: dict
baselined:
  description: Versions recorded as applied without running (adoption of an existing database).
  returned: always
  type: list
  elements: int
pending:
  description: Versioned files not applied when the run ends (in check mode, all that would be applied).
  returned: always
  type: list
  elements: str
drift:
  description: Drifted objects found (kind, object, problem, statements).
  returned: always
  type: list
  elements: dict
repaired:
  description: Statements run and committed to repair drift (empty in check mode and with drift=report).
  returned: always
  type: list
  elements: str
deferred:
  description: Drift whose repair rewrites a table, not run without I(rewrite) (kind, object, problem, statements).
  returned: always
  type: list
  elements: dict
unmanaged:
  description: Objects of the schema that no migration defines, left alone.
  returned: always
  type: list
  elements: str
checksum_repaired:
  description: Applied scripts whose recorded checksum was replaced (repair_checksums).
  returned: always
  type: list
  elements: str
drift_checked:
  description: Whether the live schema was compared with the shadow schema (false when the fingerprint matched).
  returned: always
  type: bool
seeded:
  description: The seed files run (in check mode, that would run).
  returned: always
  type: list
  elements: str
seed_rows:
  description: Rows the seed files inserted, updated or deleted (in check mode, would).
  returned: always
  type: int
current_version:
  description: Highest applied version at the end of the run.
  returned: always
  type: int
fingerprint:
  description: md5 of the managed catalog at the end of the run (host_fingerprint reads the same fingerprint).
  returned: always
  type: str
queries:
  description: Statements executed, in order (file statements, repairs, bookkeeping).
  returned: always
  type: list
  elements: str
duration_ms:
  description: Wall time of the run in milliseconds.
  returned: always
  type: int
"""

import contextlib
import os
import re
import time

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.common.text.converters import to_native
from ansible_collections.community.postgresql.plugins.module_utils.postgres import (
    connect_to_db,
    ensure_required_libs,
    get_conn_params,
    postgres_common_argument_spec,
)
from ansible_collections.chatflow.db.plugins.module_utils.pg_catalog import (
    ROWS_WRITTEN_SQL,
    catalog_fingerprint_sql,
    executed_query,
    tuple_cursor,
    describe_error,
    valid_identifier,
    valid_setting_name,
)
from ansible_collections.chatflow.db.plugins.module_utils.pg_drift import (
    ALL_KINDS,
    DEPENDENT_VIEWS_SQL,
    EXTENSIONS_SQL,
    SHADOW_SCHEMA,
    STRUCTURE_KINDS,
    diff_snapshots,
    qident,
    read_snapshot,
    rename_schema,
    spelled,
)
from ansible_collections.chatflow.db.plugins.module_utils.pg_migrate_plan import (
    MigrationError,
    created_index_name,
    load_migrations,
    load_seeds,
    parse_target,
    plan_migrate,
    plan_rollback,
    strip_concurrently,
)

LOCK_NAMESPACE = "chatflow.db.pg_migrate:"
VIEW_NAME_RE = re.compile(
    r"CREATE\s+(?:OR\s+REPLACE\s+)?(?:MATERIALIZED\s+)?VIEW\s+(?:IF\s+NOT\s+EXISTS\s+)?([A-Za-z_][A-Za-z0-9_]*)", re.I
)


class Failure(Exception):
    """A failure to report with fail_json; extra keys go into the result."""

    def __init__(self, msg, **extra):
        Exception.__init__(self, msg)
        self.msg = msg
        self.extra = extra


class Migrator(object):
    def __init__(self, module, conn, files, seeds=()):
        self.module = module
        self.params = module.params
        self.conn = conn
        self.cursor = tuple_cursor(conn)
        self.check = module.check_mode
        self.versioned, self.downs, self.repeatables = files
        self.seeds = list(seeds)
        self.schema = self.params["schema"]
        self.table = "%s.%s" % (qident(self.params["tracking_schema"]), qident(self.params["tracking_table"]))
        self.state_table = "%s.%s" % (qident(self.params["tracking_schema"]), "schema_state")
        self.state_key = "%s.%s" % (self.params["tracking_schema"], self.params["tracking_table"])
        self.result = dict(
            changed=False,
            applied=[],
            repeatables=[],
            rolled_back=[],
            baselined=[],
            pending=[],
            drift=[],
            repaired=[],
            deferred=[],
            unmanaged=[],
            checksum_repaired=[],
            seeded=[],
            seed_rows=0,
            drift_checked=False,
            current_version=0,
            fingerprint="",
            queries=[],
        )
        self.lock_key = None
        self.concurrent = []

    # -- plumbing ---------------------------------------------------------
    def execute(self, sql, args=None, log=True):
        self.cursor.execute(sql, args)
        if log:
            self.result["queries"].append(sql.strip() if args is None else executed_query(self.cursor, sql, args))

    def begin(self):
        """Start a transaction (in check mode the whole run is one, opened in run())."""
        if not self.check:
            self.execute("BEGIN", log=False)
        self.execute("SET LOCAL lock_timeout = %s", (self.params["lock_timeout"],), log=False)

    def commit(self):
        if not self.check:
            self.execute("COMMIT", log=False)

    def rollback(self):
        with contextlib.suppress(Exception):  # the connection may be gone; the server rolls back then
            self.execute("ROLLBACK", log=False)

    def set_role(self):
        if self.params["apply_role"]:
            self.execute("SET LOCAL ROLE %s" % qident(self.params["apply_role"]), log=False)

    def run_file(self, migration, in_transaction):
        """Run a file's statements with search_path = the schema, as apply_role.

        in_transaction: inside a transaction block (SET LOCAL, reset on commit),
        or in autocommit (session settings, reset here).  In check mode a
        no-transaction file runs inside the run's transaction without CONCURRENTLY.
        """
        scope = "LOCAL " if in_transaction else ""
        self.execute("SET %ssearch_path = %s" % (scope, qident(self.schema)), log=False)
        if self.params["apply_role"]:
            self.execute("SET %sROLE %s" % (scope, qident(self.params["apply_role"])), log=False)
        strip = self.check and not migration.transactional
        try:
            self.run_statements(migration, strip)
        finally:
            if not in_transaction:
                self.execute("RESET ROLE", log=False)
                self.execute("RESET search_path", log=False)
        if in_transaction:
            self.execute("RESET ROLE", log=False)
            self.execute("RESET search_path", log=False)

    def run_statements(self, migration, strip=False):
        for statement, offset in migration.statements:
            sql = strip_concurrently(statement) if strip else statement
            try:
                self.cursor.execute(sql)
            except Exception as exc:  # psycopg2.Error: name the file, the line and the statement
                msg, line = describe_error(exc, migration.filename, migration.text, statement, offset)
                raise Failure(msg, script=migration.filename, line=line) from exc
            self.result["queries"].append(statement.strip())

    # -- locking ----------------------------------------------------------
    def acquire_lock(self):
        self.execute("SET application_name = 'chatflow.db.pg_migrate'", log=False)
        # A run killed in the middle of a long statement: the server notices the
        # lost client within a second, rolls the file back and frees the lock,
        # instead of finishing the statement first.
        self.execute("SET client_connection_check_interval = '1s'", log=False)
        self.execute("SELECT hashtext(%s)::bigint", (LOCK_NAMESPACE + self.state_key,), log=False)
        self.lock_key = self.cursor.fetchone()[0]
        deadline = time.monotonic() + max(0, self.params["lock_wait"])
        while True:
            self.execute("SELECT pg_try_advisory_lock(%s)", (self.lock_key,), log=False)
            if self.cursor.fetchone()[0]:
                return
            if time.monotonic() >= deadline:
                key = self.lock_key & 0xFFFFFFFFFFFFFFFF
                self.execute(
                    "SELECT a.pid, a.usename, a.application_name, a.backend_start::text, a.state "
                    "FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
                    "WHERE l.locktype = 'advisory' AND l.granted AND l.database = "
                    "(SELECT oid FROM pg_database WHERE datname = current_database()) "
                    "AND l.classid = %s::bigint::oid AND l.objid = %s::bigint::oid AND l.objsubid = 1",
                    (key >> 32, key & 0xFFFFFFFF),
                    log=False,
                )
                holders = self.cursor.fetchall()
                who = "; ".join("pid %s (user %s, application %s, connected %s, %s)" % h for h in holders) or "unknown"
                raise Failure(
                    "another migration run holds the migration lock of database %s (%s); waited %d s (lock_wait). "
                    "If that run is dead, end its session: SELECT pg_terminate_backend(<pid>);"
                    % (self.params["login_db"], who, self.params["lock_wait"])
                )
            time.sleep(0.5)

    def release_lock(self):
        if self.lock_key is not None:
            with contextlib.suppress(Exception):  # closing the session releases it anyway
                self.cursor.execute("SELECT pg_advisory_unlock(%s)", (self.lock_key,))

    # -- tracking ---------------------------------------------------------
    def ensure_tracking(self):
        schema = qident(self.params["tracking_schema"])
        self.execute("SELECT to_regclass(%s) IS NOT NULL", (self.state_key,), log=False)
        if self.cursor.fetchone()[0]:
            return
        for sql in (
            "CREATE SCHEMA IF NOT EXISTS %s" % schema,
            "REVOKE ALL ON SCHEMA %s FROM PUBLIC" % schema,
            "CREATE TABLE IF NOT EXISTS %s ("
            " key text PRIMARY KEY,"
            " version integer,"
            " description text NOT NULL,"
            " type text NOT NULL CHECK (type IN ('versioned', 'repeatable', 'baseline')),"
            " script text NOT NULL,"
            " checksum text NOT NULL,"
            " applied_at timestamptz NOT NULL DEFAULT now(),"
            " applied_by text NOT NULL DEFAULT session_user,"
            " execution_ms integer NOT NULL DEFAULT 0,"
            " success boolean NOT NULL)" % self.table,
            "CREATE TABLE IF NOT EXISTS %s ("
            " key text PRIMARY KEY,"
            " fingerprint text NOT NULL,"
            " checked_at timestamptz NOT NULL DEFAULT now())" % self.state_table,
            "REVOKE ALL ON ALL TABLES IN SCHEMA %s FROM PUBLIC" % schema,
        ):
            self.execute(sql)

    def read_applied(self):
        self.execute("SELECT key, checksum, success, script, version FROM %s" % self.table, log=False)
        return dict(
            (key, dict(checksum=checksum, success=success, script=script, version=version))
            for key, checksum, success, script, version in self.cursor.fetchall()
        )

    def record(self, migration, kind, elapsed_ms, success=True):
        self.execute(
            "INSERT INTO " + self.table + " AS t (key, version, description, type, script, checksum, applied_by, "
            "execution_ms, success) VALUES (%s, %s, %s, %s, %s, %s, coalesce(%s, session_user), %s, %s) "
            "ON CONFLICT (key) DO UPDATE SET version = EXCLUDED.version, description = EXCLUDED.description, "
            "type = EXCLUDED.type, script = EXCLUDED.script, checksum = EXCLUDED.checksum, "
            "applied_at = now(), applied_by = EXCLUDED.applied_by, execution_ms = EXCLUDED.execution_ms, "
            "success = EXCLUDED.success",
            (
                migration.key,
                migration.version,
                migration.description.replace("_", " "),
                kind,
                migration.filename,
                migration.checksum,
                self.params["applied_by"],
                int(elapsed_ms),
                success,
            ),
        )

    def read_fingerprint_record(self):
        self.execute("SELECT fingerprint FROM %s WHERE key = %%s" % self.state_table, (self.state_key,), log=False)
        row = self.cursor.fetchone()
        return row[0] if row else None

    def write_fingerprint_record(self, fingerprint):
        self.execute(
            "INSERT INTO %s AS s (key, fingerprint) VALUES (%%s, %%s) ON CONFLICT (key) DO UPDATE "
            "SET fingerprint = EXCLUDED.fingerprint, checked_at = now() "
            "WHERE s.fingerprint IS DISTINCT FROM EXCLUDED.fingerprint" % self.state_table,
            (self.state_key, fingerprint),
            log=False,
        )

    def fingerprint(self):
        """The catalog fingerprint of the schema (pg_catalog's, the one host_fingerprint also reads)."""
        self.execute("SET LOCAL search_path = pg_catalog", log=False)
        self.execute(catalog_fingerprint_sql([self.schema]), log=False)
        digest = self.cursor.fetchone()[0]
        self.execute("RESET search_path", log=False)
        return digest

    def schema_has_tables(self):
        self.execute(
            "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = %s AND c.relkind IN ('r', 'p')",
            (self.schema,),
            log=False,
        )
        return self.cursor.fetchone()[0] > 0

    # -- the run ----------------------------------------------------------
    def migrate(self, target):
        self.begin()
        self.ensure_tracking()
        applied = self.read_applied()
        self.commit()
        fresh = not any(r["success"] for r in applied.values())
        if fresh and self.schema_has_tables():
            self.adopt(applied)
        plan = self.plan(applied, target)
        self.repair_checksums(plan["checksum_repairs"])
        drift_mode = self.params["drift"]
        if self.result["baselined"] and drift_mode != "ignore":
            # The adopted schema is only roughly at the baseline: bring its
            # tables to it before later versions build on them.
            baseline = self.params["baseline_version"]
            self.drift_check([m for m in self.versioned if m.version <= baseline], STRUCTURE_KINDS, repeatables=False)
        for migration in plan["pending"]:
            self.apply(migration, "versioned")
        if plan["beyond_target"]:
            self.module.warn(
                "versions %s are applied above target %d; roll back (state=rolled_back) to remove them"
                % (", ".join(str(v) for v in plan["beyond_target"]), target)
            )
        want = [m for m in self.versioned if m.version <= target or m.version in plan["beyond_target"]]
        if plan["repeatables"] and drift_mode != "ignore" and not fresh and not self.result["baselined"]:
            # Tables, columns, constraints and indexes first, so that the
            # repeatable files (triggers, views) find what they build on.
            self.drift_check(want, STRUCTURE_KINDS)
        for migration in plan["repeatables"]:
            self.apply(migration, "repeatable")
        if drift_mode != "ignore":
            self.final_drift_check(want, bool(plan["pending"] or plan["repeatables"] or self.result["baselined"]))
        done = set(key for key, row in applied.items() if row["success"])
        if not self.check:
            done.update(m.key for m in plan["pending"])
        self.result["pending"] = [m.filename for m in self.versioned if m.key not in done]
        self.seed()

    def seed(self):
        """The seed files in one transaction as apply_role, with their settings: changed when they write rows."""
        if not self.seeds:
            return
        self.begin()
        self.execute(ROWS_WRITTEN_SQL, log=False)
        before = int(self.cursor.fetchone()[0])
        for name, value in sorted(self.params["seed_settings"].items()):
            self.execute("SELECT set_config(%s, %s, true)", (name, "" if value is None else str(value)), log=False)
        self.execute("SET LOCAL search_path = %s" % qident(self.schema), log=False)
        self.set_role()
        for seed in self.seeds:
            self.run_statements(seed)
            self.result["seeded"].append(seed.filename)
        self.execute("RESET ROLE", log=False)
        self.execute("RESET search_path", log=False)
        self.execute(ROWS_WRITTEN_SQL, log=False)
        self.result["seed_rows"] = int(self.cursor.fetchone()[0]) - before
        self.commit()
        if self.result["seed_rows"]:
            self.result["changed"] = True

    def adopt(self, applied):
        """A schema with tables but no history is recorded as at the baseline version (or refused)."""
        baseline = self.params["baseline_version"]
        if baseline is None:
            raise Failure(
                "schema %s of database %s already has tables but no migration history in %s; to adopt it, "
                "set baseline_version to the version it matches (the drift repair then brings it to what the "
                "migrations define)" % (self.schema, self.params["login_db"], self.state_key)
            )
        self.begin()
        for migration in self.versioned:
            if migration.version <= baseline:
                self.record(migration, "baseline", 0)
                self.result["baselined"].append(migration.version)
                applied[migration.key] = dict(checksum=migration.checksum, success=True, script=migration.filename)
        self.commit()

    def plan(self, applied, target):
        try:
            return plan_migrate(
                self.versioned,
                self.repeatables,
                applied,
                target,
                repair_checksums=self.params["repair_checksums"],
                out_of_order=self.params["out_of_order"],
            )
        except MigrationError as exc:
            raise Failure(str(exc)) from exc

    def repair_checksums(self, repairs):
        if not repairs:
            return
        self.begin()
        for key, script, _old, new in repairs:
            self.execute("UPDATE %s SET checksum = %%s WHERE key = %%s" % self.table, (new, key))
            self.result["checksum_repaired"].append(script)
        self.commit()
        self.result["changed"] = True

    def final_drift_check(self, want, changed_files):
        """The whole comparison when files changed (or forced), or when the catalog's fingerprint moved."""
        if changed_files or self.params["force_drift_check"]:
            self.drift_check(want, ALL_KINDS)
            return
        self.begin()
        recorded, current = self.read_fingerprint_record(), self.fingerprint()
        self.commit()
        if recorded != current:
            self.drift_check(want, ALL_KINDS)
        else:
            self.result["fingerprint"] = current

    def apply(self, migration, kind):
        started = time.monotonic()
        if migration.transactional or self.check:
            self.begin()
            self.run_file(migration, in_transaction=True)
            self.record(migration, kind, (time.monotonic() - started) * 1000)
            self.commit()
        else:
            self.apply_outside_transaction(migration, kind, started)
        entry = migration.as_dict()
        entry.update(type=kind, execution_ms=int((time.monotonic() - started) * 1000))
        self.result["applied"].append(entry)
        if kind == "repeatable":
            self.result["repeatables"].append(migration.filename)
        self.result["changed"] = True

    def apply_outside_transaction(self, migration, kind, started):
        """One statement in autocommit; its tracking row says success=false until it is done."""
        statement = migration.statements[0][0]
        self.drop_invalid_indexes_named_in(statement)
        self.record(migration, kind, 0, success=False)
        self.execute("SET lock_timeout = %s", (self.params["lock_timeout"],), log=False)
        try:
            self.run_file(migration, in_transaction=False)
        except Failure:
            self.drop_invalid_indexes_named_in(statement)
            self.execute("DELETE FROM %s WHERE key = %%s AND NOT success" % self.table, (migration.key,), log=False)
            raise
        finally:
            self.execute("RESET lock_timeout", log=False)
        self.record(migration, kind, (time.monotonic() - started) * 1000)

    def drop_invalid_indexes_named_in(self, statement):
        """An interrupted CREATE INDEX CONCURRENTLY leaves an invalid index that IF NOT EXISTS would keep:
        the index the statement creates, named exactly, is dropped when it is invalid."""
        name = created_index_name(statement)
        if name is None:
            return
        self.execute(
            "SELECT c.relname FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
            "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = %s AND c.relname = %s "
            "AND NOT i.indisvalid",
            (self.schema, name),
            log=False,
        )
        if self.cursor.fetchone():
            self.execute("DROP INDEX CONCURRENTLY IF EXISTS %s.%s" % (qident(self.schema), qident(name)))

    def drift_check(self, migrations, kinds, repeatables=True):
        """Build the shadow schema, compare, repair (or report), verify; one transaction."""
        self.result["drift_checked"] = True
        repair = self.params["drift"] == "repair"
        self.concurrent = []
        self.begin()
        found = self.build_shadow(list(migrations) + (list(self.repeatables) if repeatables else []))
        self.execute("SET LOCAL search_path = pg_catalog", log=False)
        desired = read_snapshot(self.cursor, SHADOW_SCHEMA, self.schema)
        self.add_round_trips(desired)
        repairs, unmanaged = self.compare(desired, kinds)
        found.extend(r.as_dict() for r in repairs)
        self.result["drift"].extend(found)
        self.result["unmanaged"] = unmanaged
        if repair:
            self.repair(repairs, desired, kinds, found)
        self.execute("DROP SCHEMA %s CASCADE" % qident(SHADOW_SCHEMA), log=False)
        done = [item for item in found if not item.get("deferred")]
        if repair and not self.check:
            for item in done:
                self.result["repaired"].extend(item["statements"])
        concurrent = self.concurrent if repair and not self.check else []
        # While a repair is deferred, every run checks again (and warns again).
        record = kinds == ALL_KINDS and (repair or not found) and not self.result["deferred"]
        if record and not concurrent:
            self.record_catalog()
        self.commit()
        if concurrent:
            self.build_concurrently(concurrent)
            if record:
                self.begin()
                self.record_catalog()
                self.commit()
        if done and repair:
            self.result["changed"] = True

    def record_catalog(self):
        self.result["fingerprint"] = self.fingerprint()
        if not self.check:
            self.write_fingerprint_record(self.result["fingerprint"])

    def build_concurrently(self, repairs):
        """The index repairs, outside a transaction: CREATE INDEX CONCURRENTLY takes no lock that blocks
        the table's writers.  A build that is interrupted leaves an invalid index, dropped (by its exact
        name) before the next attempt; a build that ends invalid fails the run."""
        self.execute("SET search_path = pg_catalog, %s" % qident(self.schema), log=False)
        self.execute("SET lock_timeout = %s", (self.params["lock_timeout"],), log=False)
        try:
            for rep in repairs:
                for statement in rep.statements:
                    self.drop_invalid_indexes_named_in(statement)
                    self.run_repair(rep, statement, self.result["drift"])
        finally:
            self.execute("RESET lock_timeout", log=False)
            self.execute("RESET search_path", log=False)
        names = [rep.object for rep in repairs]
        self.execute(
            "SELECT c.relname FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_namespace n "
            "ON n.oid = c.relnamespace WHERE n.nspname = %s AND c.relname = ANY(%s) AND NOT i.indisvalid",
            (self.schema, names),
            log=False,
        )
        invalid = [row[0] for row in self.cursor.fetchall()]
        if invalid:
            raise Failure("indexes built concurrently are invalid: %s" % ", ".join(invalid), drift=self.result["drift"])

    def build_shadow(self, migrations):
        """Replay the migrations into the shadow schema; the extensions they need that are missing."""
        shadow = qident(SHADOW_SCHEMA)
        self.execute("SET LOCAL TimeZone = 'UTC'", log=False)
        self.execute(EXTENSIONS_SQL, log=False)
        extensions_before = set(row[0] for row in self.cursor.fetchall())
        self.execute("DROP SCHEMA IF EXISTS %s CASCADE" % shadow, log=False)
        owner = qident(self.params["apply_role"]) if self.params["apply_role"] else "CURRENT_USER"
        self.execute("CREATE SCHEMA %s AUTHORIZATION %s" % (shadow, owner), log=False)
        self.set_role()
        # Only the shadow: an unqualified name can never reach the live schema.
        self.execute("SET LOCAL search_path = %s" % shadow, log=False)
        for migration in migrations:
            for statement, offset in migration.statements:
                self.replay(migration, statement, offset)
        self.execute("RESET ROLE", log=False)
        self.execute(EXTENSIONS_SQL, log=False)
        created = sorted((name, schema) for name, schema, _v in self.cursor.fetchall() if name not in extensions_before)
        return [
            dict(
                kind="extension",
                object=name,
                problem="missing",
                statements=["CREATE EXTENSION %s WITH SCHEMA %s" % (qident(name), schema)],
            )
            for name, schema in created
        ]

    def replay(self, migration, statement, offset):
        try:
            self.cursor.execute(strip_concurrently(statement))
        except Exception as exc:  # psycopg2.Error
            msg, line = describe_error(exc, migration.filename, migration.text, statement, offset)
            raise Failure(
                "building the reference schema for the drift check failed (migrations must not qualify "
                "their objects with schema %s): %s" % (self.schema, msg),
                script=migration.filename,
                line=line,
            ) from exc

    def repair(self, repairs, desired, kinds, found):
        """Run the repairs in the live schema, then compare again: nothing may be left."""
        deferred = [r for r in repairs if r.deferred]
        self.defer(deferred)
        repairs = [r for r in repairs if not r.deferred]
        if not self.check:
            # Built after the transaction; a dry run builds them in it (without CONCURRENTLY), rolled back.
            self.concurrent = [r for r in repairs if r.concurrent]
            repairs = [r for r in repairs if not r.concurrent]
        unrepairable = [r for r in repairs if not r.statements]
        if unrepairable:
            raise Failure(
                "drift that cannot be repaired in place: %s"
                % "; ".join("%s %s: %s" % (r.kind, r.object, r.problem) for r in unrepairable),
                drift=found,
            )
        if not repairs:
            return
        self.execute("SET LOCAL search_path = pg_catalog, %s" % qident(self.schema), log=False)
        for rep in repairs:
            if rep.phase == "owner":
                self.execute("RESET ROLE", log=False)
            else:
                self.set_role()
            for statement in rep.statements:
                self.run_repair(rep, strip_concurrently(statement) if rep.concurrent else statement, found)
        self.execute("RESET ROLE", log=False)
        self.execute("SET LOCAL search_path = pg_catalog", log=False)
        later = set(r.object for r in self.concurrent)
        left = [r for r in self.compare(desired, kinds)[0] if not r.deferred and r.object not in later]
        if left:
            raise Failure(
                "drift remains after repair: %s" % "; ".join("%s %s: %s" % (r.kind, r.object, r.problem) for r in left),
                drift=found,
            )

    def defer(self, deferred):
        """Repairs that would rewrite a table: reported, and warned about on every run until done."""
        if not deferred:
            return
        self.result["deferred"].extend(r.as_dict() for r in deferred)
        self.module.warn(
            "not repaired, because it rewrites a table under an exclusive lock: %s"
            % "; ".join("%s %s: %s" % (r.kind, r.object, r.problem) for r in deferred)
        )

    def run_repair(self, rep, statement, found):
        try:
            self.execute(statement)
        except Exception as exc:  # psycopg2.Error
            raise Failure(
                "repairing %s %s (%s) failed: %s\n--- statement ---\n%s"
                % (rep.kind, rep.object, rep.problem, to_native(exc).strip(), statement),
                drift=found,
            ) from exc

    def add_round_trips(self, desired):
        """Record how each CHECK constraint reads back once re-created from its own text.

        PostgreSQL's deparsed form is not a fixed point (an IN list comes back
        as = ANY (ARRAY[...]) with the casts moved), so a constraint restored
        from the shadow's text reads differently from one the migration made.
        Both forms are accepted.
        """
        shadow, schema = spelled(self.cursor, SHADOW_SCHEMA), spelled(self.cursor, self.schema)
        for con in desired["constraint"].values():
            if con["type"] != "c":
                continue
            table = "%s.%s" % (qident(SHADOW_SCHEMA), qident(con["table"]))
            self.execute(
                "ALTER TABLE %s ADD CONSTRAINT chatflow_round_trip %s"
                % (table, rename_schema(con["definition"], self.schema, shadow)),
                log=False,
            )
            self.execute(
                "SELECT pg_get_constraintdef(oid) FROM pg_constraint WHERE conname = 'chatflow_round_trip' "
                "AND conrelid = %s::regclass",
                (table,),
                log=False,
            )
            con["alternatives"] = [rename_schema(self.cursor.fetchone()[0], SHADOW_SCHEMA, schema)]
            self.execute("ALTER TABLE %s DROP CONSTRAINT chatflow_round_trip" % table, log=False)

    def compare(self, desired, kinds):
        live = read_snapshot(self.cursor, self.schema, self.schema)

        def dependent_views(tables):
            self.execute(DEPENDENT_VIEWS_SQL, {"schema": self.schema, "tables": list(tables)}, log=False)
            return [row[0] for row in self.cursor.fetchall()]

        known = set()
        for migration in self.versioned + self.repeatables:
            known.update(VIEW_NAME_RE.findall(migration.text))
        return diff_snapshots(
            desired,
            live,
            self.schema,
            kinds=kinds,
            dependent_views=dependent_views,
            known_views=set(name.lower() for name in known),
            # Adopting a database built by hand is asked for (baseline_version); so is `rewrite`.
            rewrite=self.params["rewrite"] or bool(self.result["baselined"]),
        )

    def roll_back(self, target):
        self.begin()
        self.ensure_tracking()
        applied = self.read_applied()
        self.commit()
        try:
            steps = plan_rollback(self.versioned, self.downs, applied, target)
        except MigrationError as exc:
            raise Failure(str(exc)) from exc
        for _up, down in steps:
            started = time.monotonic()
            in_transaction = down.transactional or self.check
            if in_transaction:
                self.begin()
            self.run_file(down, in_transaction=in_transaction)
            self.execute("DELETE FROM %s WHERE key = %%s" % self.table, (str(down.version),))
            if in_transaction:
                self.commit()
            entry = down.as_dict()
            entry.update(execution_ms=int((time.monotonic() - started) * 1000))
            self.result["rolled_back"].append(entry)
            self.result["changed"] = True
        if steps:
            # The repeatable files run again after the versions come back, and
            # the next migrate compares the whole schema.
            self.begin()
            self.execute("DELETE FROM %s WHERE key LIKE 'R:%%'" % self.table)
            self.execute("DELETE FROM %s WHERE key = %%s" % self.state_table, (self.state_key,))
            self.commit()
        remaining = set(int(k) for k in applied if not k.startswith("R:") and int(k) <= target)
        self.result["pending"] = [m.filename for m in self.versioned if m.version not in remaining]

    def current_version(self):
        self.execute(
            "SELECT coalesce(max(version), 0) FROM %s WHERE success AND type <> 'repeatable'" % self.table, log=False
        )
        return int(self.cursor.fetchone()[0])


def read_directory(module, path):
    if not os.path.isdir(path):
        module.fail_json(msg="path: %s is not a directory on the managed host" % path)
    files = {}
    for name in sorted(os.listdir(path)):
        full = os.path.join(path, name)
        if not (name.endswith(".sql") and os.path.isfile(full)):
            continue
        with open(full, "rb") as handle:
            try:
                files[name] = handle.read().decode("utf-8")
            except UnicodeDecodeError as exc:
                module.fail_json(msg="path: %s is not valid UTF-8: %s" % (full, to_native(exc)))
    return files


def argument_spec():
    spec = postgres_common_argument_spec()
    spec.update(
        path=dict(type="path"),
        files=dict(type="dict"),
        seed=dict(type="dict"),
        seed_settings=dict(type="dict", default={}, no_log=True),
        login_db=dict(type="str", required=True, aliases=["db"]),
        state=dict(type="str", default="migrated", choices=["migrated", "rolled_back"]),
        target=dict(type="str", default="latest"),
        apply_role=dict(type="str"),
        applied_by=dict(type="str"),
        schema=dict(type="str", default="public"),
        tracking_schema=dict(type="str", default="chatflow_meta"),
        tracking_table=dict(type="str", default="schema_migrations"),
        baseline_version=dict(type="int"),
        repair_checksums=dict(type="bool", default=False),
        out_of_order=dict(type="bool", default=False),
        drift=dict(type="str", default="repair", choices=["repair", "report", "ignore"]),
        force_drift_check=dict(type="bool", default=False),
        rewrite=dict(type="bool", default=False),
        lock_timeout=dict(type="str", default="10s"),
        lock_wait=dict(type="int", default=300),
    )
    return spec


def check_params(params):
    """The message of the first bad parameter, or None."""
    for name in ("apply_role", "schema", "tracking_schema", "tracking_table"):
        if params[name] is not None and not valid_identifier(params[name]):
            return (
                "%s: %r is not a valid identifier (letters, digits, underscores, at most 63 characters, "
                "not starting with a digit)" % (name, params[name])
            )
    if params["tracking_schema"] == params["schema"] or params["schema"] == SHADOW_SCHEMA:
        return "tracking_schema: must differ from schema (%s)" % params["schema"]
    if params["baseline_version"] is not None and params["baseline_version"] < 1:
        return "baseline_version: must be a version number of 1 or more"
    if params["lock_wait"] < 0:
        return "lock_wait: must be 0 or more seconds"
    for name in params["seed_settings"]:
        if not valid_setting_name(name):
            return (
                "seed_settings: %r is not a valid custom setting name; use prefix.name "
                "(letters, digits, underscores)" % (name,)
            )
    return None


def load_files(module, params):
    """(files, target, seeds): the parsed migrations, the target version and the seed files;
    MigrationError names the problem."""
    if params["files"] is not None:
        texts = dict((name, str(text)) for name, text in params["files"].items() if name.endswith(".sql"))
        if any("/" in name for name in texts):
            raise MigrationError("files: keys are file names, without a directory")
    else:
        texts = read_directory(module, params["path"])
    files = load_migrations(texts)
    versions = [m.version for m in files[0]]
    target = parse_target(params["target"], versions)
    if params["state"] == "rolled_back" and str(params["target"]).strip().lower() in ("", "latest"):
        raise MigrationError("target: rolling back needs a version number (0 removes every version)")
    if params["baseline_version"] is not None and params["baseline_version"] not in versions:
        raise MigrationError(
            "baseline_version: there is no migration with version %d (known: %s)"
            % (params["baseline_version"], ", ".join(str(v) for v in versions) or "none")
        )
    seeds = load_seeds(dict((name, str(text)) for name, text in (params["seed"] or {}).items()))
    return files, target, seeds


def run(module, migrator, target, started):
    """Migrate or roll back under the migration lock; a dry run rolls everything back."""
    params = module.params
    try:
        migrator.acquire_lock()
        if migrator.check:
            migrator.execute("BEGIN", log=False)
        if params["state"] == "rolled_back":
            migrator.roll_back(target)
        else:
            migrator.migrate(target)
        migrator.result["current_version"] = migrator.current_version()
        if migrator.check:
            migrator.rollback()
    except Failure as exc:
        migrator.rollback()
        result = dict(migrator.result)
        result.update(exc.extra)
        result["duration_ms"] = int((time.monotonic() - started) * 1000)
        module.fail_json(msg=exc.msg, **result)
    except Exception as exc:  # connection or bookkeeping failure
        migrator.rollback()
        module.fail_json(msg="pg_migrate failed: %s" % to_native(exc).strip(), **migrator.result)
    finally:
        migrator.release_lock()


def main():
    module = AnsibleModule(
        argument_spec=argument_spec(),
        supports_check_mode=True,
        required_one_of=[("path", "files")],
        mutually_exclusive=[("path", "files")],
    )
    params = module.params
    problem = check_params(params)
    if problem:
        module.fail_json(msg=problem)
    try:
        files, target, seeds = load_files(module, params)
    except MigrationError as exc:
        module.fail_json(msg="%s: %s" % (params["path"] or "files", exc))

    started = time.monotonic()
    ensure_required_libs(module)
    conn, _err = connect_to_db(module, get_conn_params(module, params), autocommit=True)
    migrator = Migrator(module, conn, files, seeds)
    try:
        run(module, migrator, target, started)
    finally:
        conn.close()
    result = migrator.result
    if module._diff and result["changed"]:
        result["diff"] = dict(before="", after="\n".join(result["queries"]) + "\n")
    result["duration_ms"] = int((time.monotonic() - started) * 1000)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
