#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: ChatFlow platform team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: pg_sql_apply
short_description: Apply idempotent SQL files to PostgreSQL, reporting changed only when something changed
version_added: "0.1.0"
description:
  - Runs one or more SQL files, written to be rerunnable (C(IF NOT EXISTS), C(OR REPLACE), C(ON CONFLICT)),
    in a single transaction, under a transaction-level advisory lock so concurrent runs serialise.
  - Reports C(changed) only when the catalog of the tracked schemas (tables, columns, constraints, indexes
    and their validity, triggers, functions, views, extensions, owners) differs after the files ran,
    or when the files wrote table rows.  Otherwise the transaction is rolled back.
  - With I(skip_unchanged), the checksum of the files and the catalog fingerprint are recorded in
    I(state_schema); a rerun whose files and live catalog both match the record does nothing at all and
    takes no lock on any table.  A dropped index or trigger changes the fingerprint, so the files run again
    and repair it.
  - In check mode the files run inside the transaction, which is always rolled back, so the result tells
    what a real run would change without writing anything.
options:
  path:
    description: SQL files on the managed host, run in this order.
    type: list
    elements: path
    required: true
  login_db:
    description: Database to connect to.
    type: str
    required: true
    aliases: [db]
  apply_role:
    description:
      - Role to C(SET ROLE) to while the files run, so that created objects are owned by it.
      - The fingerprint and the bookkeeping are done as the login user.
    type: str
  settings:
    description:
      - Custom session settings (C(prefix.name) => value) set for the transaction with C(set_config), for the
        SQL to read with C(current_setting()). Values are never logged or returned.
    type: dict
    default: {}
  skip_unchanged:
    description: Record checksum and fingerprint, and skip the run when both still match the record.
    type: bool
    default: true
  state_key:
    description: Name of the record in I(state_schema). Defaults to the file name of the first I(path).
    type: str
  state_schema:
    description: Schema of the bookkeeping table (created when missing, outside the tracked schemas).
    type: str
    default: chatflow_meta
  fingerprint_schemas:
    description: Schemas whose catalog makes up the fingerprint.
    type: list
    elements: str
    default: [public]
  lock_timeout:
    description: C(lock_timeout) for the run, so a busy table fails the run instead of stalling the app.
    type: str
    default: 10s
extends_documentation_fragment:
  - community.postgresql.postgres
notes:
  - Needs psycopg2 (or psycopg 3, which community.postgresql prefers when both are present) on the managed host.
  - Connects as I(login_user) (C(postgres) over the local socket by default).
author:
  - ChatFlow platform team
"""

EXAMPLES = r"""
- name: Apply the ChatFlow schema as its owner
  become: true
  become_user: postgres
  chatflow.db.pg_sql_apply:
    login_db: chatflow_mvp
    path: /home/agenti/my-mvp-slack/database/schema.sql
    apply_role: chatflow_owner

- name: Insert the seed rows, handing passwords to the SQL as settings
  become: true
  become_user: postgres
  chatflow.db.pg_sql_apply:
    login_db: chatflow_mvp
    path: /home/agenti/my-mvp-slack/database/seed.sql
    apply_role: chatflow_owner
    skip_unchanged: false
    settings:
      chatflow.seed_password_alice: "{{ alice_password }}"
  no_log: true
"""

RETURN = r"""
skipped_unchanged:
  description: True when the record matched and nothing ran.
  returned: always
  type: bool
catalog_changed:
  description: Whether the fingerprint after the files differs from before.
  returned: always
  type: bool
rows_written:
  description: Rows inserted, updated or deleted by the files.
  returned: always
  type: int
fingerprint_before:
  description: md5 of the tracked catalog before the run.
  returned: always
  type: str
fingerprint:
  description: md5 of the tracked catalog after the run (what is recorded).
  returned: always
  type: str
checksum:
  description: sha256 of the files, line endings normalised.
  returned: always
  type: str
executed:
  description: The files that ran, with their checksums.
  returned: always
  type: list
  elements: dict
repaired:
  description: >-
    Statements that repaired drift no file can repair (REINDEX of an invalid index, ENABLE TRIGGER,
    ALTER ... OWNER TO I(apply_role) for an object handed to another owner).
  returned: always
  type: list
  elements: str
queries:
  description: The statements executed, in order (the files' statements and the bookkeeping statements).
  returned: always
  type: list
  elements: str
duration_ms:
  description: Wall time of the run in milliseconds.
  returned: always
  type: int
"""

import os
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
    tuple_cursor,
    BROKEN_OBJECTS_SQL,
    FINGERPRINT_SQL,
    ROWS_WRITTEN_SQL,
    describe_error,
    normalise_sql,
    split_statements,
    sql_checksum,
    valid_identifier,
    valid_setting_name,
)

STATE_TABLE = "sql_apply_state"


def fingerprint(cursor, schemas):
    cursor.execute("SET LOCAL search_path = pg_catalog")
    cursor.execute(FINGERPRINT_SQL, {"schemas": list(schemas)})
    row = cursor.fetchone()
    cursor.execute("RESET search_path")
    return row[0]


def state_table_exists(cursor, schema):
    cursor.execute("SELECT to_regclass(%s) IS NOT NULL", ("%s.%s" % (schema, STATE_TABLE),))
    return cursor.fetchone()[0]


def read_state(cursor, schema, key):
    if not state_table_exists(cursor, schema):
        return None
    cursor.execute('SELECT checksum, fingerprint FROM "%s".%s WHERE key = %%s' % (schema, STATE_TABLE), (key,))
    return cursor.fetchone()


def write_state(cursor, schema, key, record, queries):
    """Upsert the record (checksum, fingerprint) of `key`, creating its table if needed."""
    checksum, fprint = record
    ddl = [
        'CREATE SCHEMA IF NOT EXISTS "%s"' % schema,
        'REVOKE ALL ON SCHEMA "%s" FROM PUBLIC' % schema,
        'CREATE TABLE IF NOT EXISTS "%s".%s ('
        " key text PRIMARY KEY,"
        " checksum text NOT NULL,"
        " fingerprint text NOT NULL,"
        " applied_at timestamptz NOT NULL DEFAULT now(),"
        " applied_by text NOT NULL DEFAULT current_user)" % (schema, STATE_TABLE),
    ]
    for statement in ddl:
        cursor.execute(statement)
        queries.append(statement)
    upsert = (
        'INSERT INTO "%s".%s AS s (key, checksum, fingerprint) VALUES (%%s, %%s, %%s) '
        "ON CONFLICT (key) DO UPDATE SET checksum = EXCLUDED.checksum, fingerprint = EXCLUDED.fingerprint, "
        "applied_at = now(), applied_by = current_user "
        "WHERE (s.checksum, s.fingerprint) IS DISTINCT FROM (EXCLUDED.checksum, EXCLUDED.fingerprint)"
        % (schema, STATE_TABLE)
    )
    cursor.execute(upsert, (key, checksum, fprint))
    queries.append(upsert)


def argument_spec():
    spec = postgres_common_argument_spec()
    spec.update(
        path=dict(type="list", elements="path", required=True),
        login_db=dict(type="str", required=True, aliases=["db"]),
        apply_role=dict(type="str"),
        settings=dict(type="dict", default={}, no_log=True),
        skip_unchanged=dict(type="bool", default=True),
        state_key=dict(type="str", no_log=False),
        state_schema=dict(type="str", default="chatflow_meta"),
        fingerprint_schemas=dict(type="list", elements="str", default=["public"]),
        lock_timeout=dict(type="str", default="10s"),
    )
    return spec


def check_params(params):
    """The message of the first bad parameter, or None."""
    for name in params["settings"]:
        if not valid_setting_name(name):
            return (
                "settings: %r is not a valid custom setting name; use prefix.name (letters, digits, underscores)" % name
            )
    for label, value in (("apply_role", params["apply_role"]), ("state_schema", params["state_schema"])):
        if value is not None and not valid_identifier(value):
            return (
                "%s: %r is not a valid identifier (letters, digits, underscores, "
                "at most 63 characters, not starting with a digit)" % (label, value)
            )
    return None


def read_texts(module, paths):
    texts = []
    for path in paths:
        if not os.path.isfile(path):
            module.fail_json(msg="path: %s does not exist on the managed host" % path)
        with open(path, "rb") as handle:
            try:
                texts.append(handle.read().decode("utf-8"))
            except UnicodeDecodeError as exc:
                module.fail_json(msg="path: %s is not valid UTF-8: %s" % (path, to_native(exc)))
    return texts


class Apply(object):
    """One run: under an advisory lock, skip when nothing changed, repair what a rerun
    of the files cannot, run the files as the apply role, measure what changed."""

    def __init__(self, module, connection, texts):
        self.module, self.params = module, module.params
        self.connection, self.cursor = connection, tuple_cursor(connection)
        self.texts = texts
        self.key = self.params["state_key"] or os.path.basename(self.params["path"][0])
        self.result = dict(
            changed=False,
            skipped_unchanged=False,
            catalog_changed=False,
            rows_written=0,
            fingerprint_before="",
            fingerprint="",
            checksum=sql_checksum(texts),
            executed=[],
            repaired=[],
            queries=[],
            duration_ms=0,
        )

    def run(self):
        """The result; None when the recorded state shows nothing to do."""
        params, cursor = self.params, self.cursor
        cursor.execute("SET LOCAL lock_timeout = %s", (params["lock_timeout"],))
        cursor.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", ("chatflow.db.pg_sql_apply:" + self.key,))
        before = fingerprint(cursor, params["fingerprint_schemas"])
        self.result.update(fingerprint_before=before, fingerprint=before)
        recorded = read_state(cursor, params["state_schema"], self.key) if params["skip_unchanged"] else None
        if recorded is not None and tuple(recorded) == (self.result["checksum"], before):
            self.connection.rollback()
            self.result["skipped_unchanged"] = True
            return self.result
        self.repair_broken()
        self.run_files()
        rows = self.rows_written()
        after = fingerprint(cursor, params["fingerprint_schemas"])
        self.result.update(fingerprint=after, catalog_changed=after != before, rows_written=rows)
        self.result["changed"] = self.result["catalog_changed"] or rows > 0
        self.finish(after)
        return self.result

    def rows_written(self):
        self.cursor.execute(ROWS_WRITTEN_SQL)
        return int(self.cursor.fetchone()[0])

    def repair_broken(self):
        """First repair what a rerun of the files cannot (owners, invalid indexes,
        disabled triggers): the files then run as the rightful owner."""
        self.cursor.execute(
            BROKEN_OBJECTS_SQL,
            {"schemas": list(self.params["fingerprint_schemas"]), "owner": self.params["apply_role"] or ""},
        )
        for (statement,) in self.cursor.fetchall():
            self.cursor.execute(statement)
            self.result["queries"].append(statement)
            self.result["repaired"].append(statement)

    def run_files(self):
        for name, value in self.params["settings"].items():
            self.cursor.execute("SELECT set_config(%s, %s, true)", (name, "" if value is None else str(value)))
        if self.params["apply_role"]:
            statement = 'SET LOCAL ROLE "%s"' % self.params["apply_role"]
            self.cursor.execute(statement)
            self.result["queries"].append(statement)
        for path, text in zip(self.params["path"], self.texts):
            for statement, offset in split_statements(normalise_sql(text)):
                self.run_statement(path, text, statement, offset)
            self.result["executed"].append(dict(path=path, checksum=sql_checksum([text])))
        if self.params["apply_role"]:
            self.cursor.execute("RESET ROLE")

    def run_statement(self, path, text, statement, offset):
        try:
            self.cursor.execute(statement)
        except Exception as exc:  # psycopg2.Error: name the file, line and statement
            msg, line = describe_error(exc, path, normalise_sql(text), statement, offset)
            self.connection.rollback()
            self.module.fail_json(msg=msg, path=path, line=line, queries=self.result["queries"])
        self.result["queries"].append(statement.strip())

    def finish(self, after):
        if self.module.check_mode:
            self.connection.rollback()
            return
        if self.params["skip_unchanged"]:
            state = (self.result["checksum"], after)
            write_state(self.cursor, self.params["state_schema"], self.key, state, self.result["queries"])
        self.connection.commit()


def main():
    module = AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True)
    problem = check_params(module.params)
    if problem:
        module.fail_json(msg=problem)
    texts = read_texts(module, module.params["path"])
    started = time.monotonic()
    ensure_required_libs(module)
    connection, _conn_err = connect_to_db(module, get_conn_params(module, module.params), autocommit=False)
    run = Apply(module, connection, texts)
    try:
        result = run.run()
    except Exception as exc:  # connection or bookkeeping failure
        connection.rollback()
        module.fail_json(msg="pg_sql_apply failed: %s" % to_native(exc), queries=run.result["queries"])
    finally:
        run.cursor.close()
        connection.close()
    if module._diff and result["changed"]:
        result["diff"] = dict(before="", after="\n".join(result["queries"]) + "\n")
    result["duration_ms"] = int((time.monotonic() - started) * 1000)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
