# -*- coding: utf-8 -*-
# Copyright: ChatFlow platform team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Catalog snapshots of one schema and the diff that turns drift into repairs.

The reference is a *shadow* schema built in the same transaction by running
the migrations with ``search_path = <shadow>, public``.  Both schemas are read
with ``search_path = pg_catalog``, so every name comes out schema-qualified;
the shadow's texts are then rewritten to the live schema's name and compared
object by object.  ``diff_snapshots`` is pure: it takes two snapshots (dicts)
and returns the repairs, so it is unit-tested without a database.

What is compared (kind: key -> what must match):

- table: name -> owner, row level security (missing tables are created from
  the shadow with ``LIKE``, without their constraints and indexes, which
  follow as missing objects of their own kinds);
- column: table.column -> type, NOT NULL, default / generation expression;
- constraint: table.name -> definition, validated;
- index (not backing a constraint): name -> definition, valid;
- view / matview: name -> kind, definition, owner;
- function: signature -> definition, owner;
- trigger: table.name -> definition, enabled;
- policy: table.name -> definition;
- acl: object grantee privilege -> privileges the migrations give, and no
  privilege for PUBLIC that they do not give (grants to roles are the
  provisioning's business, not the migrations').

Objects of the live schema that the migrations do not define are reported as
``unmanaged`` and left alone: the repair never drops what it does not know.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import re

from ansible_collections.community.postgresql.plugins.module_utils.database import pg_quote_identifier

SHADOW_SCHEMA = "chatflow_migrate_shadow"

# Each query takes %(schema)s and runs with search_path = pg_catalog.
SNAPSHOT_SQL = {
    "table": """
        SELECT c.relname, pg_get_userbyid(c.relowner), c.relrowsecurity, c.relforcerowsecurity
          FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE n.nspname = %(schema)s AND c.relkind IN ('r', 'p')
    """,
    "column": """
        SELECT c.relname, a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull,
               pg_get_expr(d.adbin, d.adrelid), a.attgenerated, a.attidentity, a.attnum
          FROM pg_attribute a
          JOIN pg_class c ON c.oid = a.attrelid
          JOIN pg_namespace n ON n.oid = c.relnamespace
          LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
         WHERE n.nspname = %(schema)s AND c.relkind IN ('r', 'p') AND a.attnum > 0 AND NOT a.attisdropped
         ORDER BY c.relname, a.attnum
    """,
    "constraint": """
        SELECT c.relname, co.conname, co.contype, pg_get_constraintdef(co.oid), co.convalidated,
               CASE WHEN co.contype IN ('p', 'u') THEN pg_get_indexdef(co.conindid) END
          FROM pg_constraint co
          JOIN pg_class c ON c.oid = co.conrelid
          JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE n.nspname = %(schema)s
    """,
    "index": """
        SELECT ic.relname, c.relname, c.relkind, pg_get_indexdef(i.indexrelid), i.indisvalid AND i.indisready
          FROM pg_index i
          JOIN pg_class ic ON ic.oid = i.indexrelid
          JOIN pg_class c ON c.oid = i.indrelid
          JOIN pg_namespace n ON n.oid = ic.relnamespace
         WHERE n.nspname = %(schema)s
           AND NOT EXISTS (SELECT 1 FROM pg_constraint co
                            WHERE co.conindid = i.indexrelid AND co.contype IN ('p', 'u', 'x'))
    """,
    "view": """
        SELECT c.relname, c.relkind, pg_get_viewdef(c.oid), pg_get_userbyid(c.relowner)
          FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE n.nspname = %(schema)s AND c.relkind IN ('v', 'm')
    """,
    "function": """
        SELECT p.oid::regprocedure::text, pg_get_functiondef(p.oid), pg_get_userbyid(p.proowner),
               CASE p.prokind WHEN 'p' THEN 'PROCEDURE' ELSE 'FUNCTION' END
          FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
         WHERE n.nspname = %(schema)s AND p.prokind IN ('f', 'p')
           AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_proc'::regclass
                              AND d.objid = p.oid AND d.deptype = 'e')
    """,
    "trigger": """
        SELECT c.relname, t.tgname, pg_get_triggerdef(t.oid), t.tgenabled
          FROM pg_trigger t
          JOIN pg_class c ON c.oid = t.tgrelid
          JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE n.nspname = %(schema)s AND NOT t.tgisinternal
    """,
    "policy": """
        SELECT p.tablename, p.policyname, p.permissive, p.cmd, array_to_string(p.roles, ','), p.qual, p.with_check
          FROM pg_policies p
         WHERE p.schemaname = %(schema)s
    """,
    "acl": """
        SELECT CASE c.relkind WHEN 'S' THEN 'SEQUENCE' ELSE 'TABLE' END, c.oid::regclass::text,
               CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE pg_get_userbyid(a.grantee) END,
               a.privilege_type, a.is_grantable, c.relname
          FROM pg_class c
          JOIN pg_namespace n ON n.oid = c.relnamespace
          CROSS JOIN LATERAL aclexplode(coalesce(c.relacl, acldefault('r', c.relowner))) a
         WHERE n.nspname = %(schema)s AND c.relkind IN ('r', 'p', 'v', 'm', 'S') AND a.grantee <> c.relowner
        UNION ALL
        SELECT CASE p.prokind WHEN 'p' THEN 'PROCEDURE' ELSE 'FUNCTION' END, p.oid::regprocedure::text,
               CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE pg_get_userbyid(a.grantee) END,
               a.privilege_type, a.is_grantable, NULL
          FROM pg_proc p
          JOIN pg_namespace n ON n.oid = p.pronamespace
          CROSS JOIN LATERAL aclexplode(coalesce(p.proacl, acldefault('f', p.proowner))) a
         WHERE n.nspname = %(schema)s AND p.prokind IN ('f', 'p') AND a.grantee <> p.proowner
           AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_proc'::regclass
                              AND d.objid = p.oid AND d.deptype = 'e')
    """,
}

# Views and materialized views that depend on a table (they block ALTER COLUMN TYPE).
DEPENDENT_VIEWS_SQL = """
    SELECT DISTINCT v.relname
      FROM pg_depend d
      JOIN pg_rewrite r ON r.oid = d.objid
      JOIN pg_class v ON v.oid = r.ev_class
      JOIN pg_class t ON t.oid = d.refobjid
      JOIN pg_namespace n ON n.oid = t.relnamespace
     WHERE d.classid = 'pg_rewrite'::regclass AND n.nspname = %(schema)s
       AND t.relname = ANY(%(tables)s) AND v.oid <> t.oid
"""

EXTENSIONS_SQL = "SELECT extname, extnamespace::regnamespace::text, extversion FROM pg_extension"

STRUCTURE_KINDS = ("table", "column", "constraint", "index")
ALL_KINDS = ("table", "column", "constraint", "index", "view", "function", "trigger", "policy", "acl")


def qident(name):
    """One identifier for a statement we build, always double-quoted, by community.postgresql's helper.

    A name with a dot is refused (SQLParseError): ours never have one, and a
    qualified name is built from its quoted parts.
    """
    return pg_quote_identifier(name, "role")


def rename_schema(text, source, target):
    """Rewrite `source.` qualifications in a catalog text to `target.`.

    target is spelled as the catalog's deparsers spell it (the server's
    quote_ident: see spelled()), so that the renamed text reads as if the
    objects had been made in that schema.
    """
    if text is None or source == target:
        return text
    pattern = re.compile(r'(?<![A-Za-z0-9_$"])(?:%s|"%s")\.' % (re.escape(source), re.escape(source)))
    return pattern.sub(lambda _match: target + ".", text)


def spelled(cursor, name):
    """A name as the catalog's deparsers write it: the server's own quote_ident."""
    cursor.execute("SELECT quote_ident(%s)", (name,))
    return cursor.fetchone()[0]


def read_snapshot(cursor, schema, as_schema):
    """Read the catalog of `schema` and express it as if it were `as_schema`.

    Returns {kind: {key: record}}.  The cursor's transaction must have
    search_path = pg_catalog set by the caller.
    """

    target = spelled(cursor, as_schema)

    def r(text):
        return rename_schema(text, schema, target)

    snap = {}
    for kind in ALL_KINDS:
        cursor.execute(SNAPSHOT_SQL[kind], {"schema": schema})
        snap[kind] = dict(_ROW_READERS[kind](row, r, target) for row in cursor.fetchall())
    return snap


# One reader per kind: a catalog row -> (key, record), names renamed by r.
def _table_row(row, r, as_schema):
    name, owner, rls, force = row
    return name, dict(owner=owner, rls=bool(rls), force_rls=bool(force))


def _column_row(row, r, as_schema):
    table, column, ctype, notnull, default, generated, identity, attnum = row
    record = dict(table=table, column=column, type=r(ctype), notnull=bool(notnull), default=r(default))
    record.update(generated=generated or "", identity=identity or "", position=attnum)
    return "%s.%s" % (table, column), record


def _constraint_row(row, r, as_schema):
    table, name, contype, definition, validated, index = row
    record = dict(table=table, name=name, type=contype, definition=r(definition), validated=bool(validated))
    record["index"] = r(index)  # the unique index behind a primary key or unique constraint
    return "%s.%s" % (table, name), record


def _index_row(row, r, as_schema):
    name, table, relkind, definition, valid = row
    return name, dict(table=table, on_view=relkind in ("m", "v"), definition=r(definition), valid=bool(valid))


def _view_row(row, r, as_schema):
    name, relkind, definition, owner = row
    return name, dict(kind=relkind, definition=r(definition), owner=owner)


def _function_row(row, r, as_schema):
    signature, definition, owner, prokind = row
    return r(signature), dict(definition=r(definition), owner=owner, prokind=prokind)


def _trigger_row(row, r, as_schema):
    table, name, definition, enabled = row
    return "%s.%s" % (table, name), dict(table=table, name=name, definition=r(definition), enabled=enabled)


def _policy_row(row, r, as_schema):
    table, name, permissive, cmd, roles, qual, check = row
    record = dict(table=table, name=name, permissive=permissive, cmd=cmd, roles=roles, qual=r(qual), check=r(check))
    return "%s.%s" % (table, name), record


def _acl_row(row, r, as_schema):
    objtype, name, grantee, privilege, grantable, relation = row
    obj = r(name) if objtype in ("FUNCTION", "PROCEDURE") else _qualify(r(name), as_schema)
    record = dict(objtype=objtype, object=obj, grantee=grantee, privilege=privilege, grantable=bool(grantable))
    record["relation"] = relation  # the table's or view's own name (None for a routine)
    return "%s %s %s %s" % (objtype, obj, grantee, privilege), record


_ROW_READERS = {
    "table": _table_row,
    "column": _column_row,
    "constraint": _constraint_row,
    "index": _index_row,
    "view": _view_row,
    "function": _function_row,
    "trigger": _trigger_row,
    "policy": _policy_row,
    "acl": _acl_row,
}


def _qualify(name, schema):
    """regclass text is unqualified for pg_catalog-visible names only; ours always have a dot.

    schema is spelled as the catalog spells it, like the regclass text."""
    return name if "." in name else "%s.%s" % (schema, name)


class Repair(object):
    """One drifted object and the statements that restore it."""

    __slots__ = ("concurrent", "deferred", "kind", "object", "phase", "problem", "statements")

    def __init__(self, phase, kind, obj, problem, statements, *, deferred=False, concurrent=False):
        self.phase = phase
        self.kind = kind
        self.object = obj
        self.problem = problem
        self.statements = list(statements)
        # A repair that would rewrite a table under an exclusive lock: reported,
        # run only when rewrites are asked for.
        self.deferred = deferred
        # Statements that run outside the transaction (CREATE INDEX CONCURRENTLY):
        # they never block the table's writers.
        self.concurrent = concurrent

    def as_dict(self):
        entry = dict(kind=self.kind, object=self.object, problem=self.problem, statements=self.statements)
        if self.deferred:
            entry["deferred"] = True
        return entry


# The order repairs run in: owners first (as the superuser), then what other
# objects hang on (tables, columns), constraints (foreign keys last), views,
# indexes, functions, triggers, policies, privileges.
PHASES = (
    "owner",
    "drop_view",
    "table",
    "column",
    "constraint",
    "foreign_key",
    "view",
    "index",
    "function",
    "trigger",
    "policy",
    "acl",
)


def diff_snapshots(
    desired,
    live,
    schema,
    *,
    shadow=SHADOW_SCHEMA,
    kinds=ALL_KINDS,
    dependent_views=None,
    known_views=None,
    rewrite=True,
):
    """Compare two snapshots; return (repairs, unmanaged).

    desired: the shadow's snapshot, renamed to `schema`; live: the live
    schema's.  dependent_views(tables) -> names of live views over those
    tables (they must be dropped and recreated around a column type change);
    None means there are none.  rewrite: a column type change (which rewrites
    the table under an exclusive lock) is a repair like the others; otherwise
    it is a deferred one, reported with its statement and not run.  repairs
    are Repair objects sorted by phase.
    """
    diff = _Diff(desired, live, schema, shadow, set(kinds))
    diff.rewrite = rewrite
    for kind, compare in (
        ("table", diff.tables),
        ("column", diff.columns),
        (None, lambda: diff.dependent_views(dependent_views, known_views)),
        ("constraint", diff.constraints),
        ("view", diff.views),
        ("index", diff.indexes),
        ("function", diff.functions),
        ("trigger", diff.triggers),
        ("policy", diff.policies),
        ("acl", diff.privileges),
    ):
        if kind is None or kind in diff.kinds:
            compare()
    order = dict((p, i) for i, p in enumerate(PHASES))
    diff.repairs.sort(key=lambda rep: order[rep.phase])
    return diff.repairs, diff.unmanaged


def _view_keyword(kind):
    return "MATERIALIZED VIEW" if kind == "m" else "VIEW"


class _Diff(object):
    """One comparison of a desired and a live snapshot: a method per kind of
    object, each adding the repairs it finds."""

    def __init__(self, desired, live, schema, shadow, kinds):
        self.desired, self.live, self.shadow, self.kinds = desired, live, shadow, kinds
        self.q = qident(schema)
        self.repairs, self.unmanaged = [], []
        self.missing_tables, self.retyped_tables, self.recreated_views = set(), set(), set()
        self.rewrite = True

    def add(self, phase, kind, obj, problem, *statements):
        self.repairs.append(Repair(phase, kind, obj, problem, statements))

    def rel(self, name):
        return "%s.%s" % (self.q, qident(name))

    def extra(self, kind, label=None, keep=lambda key: True):
        """What the live schema has of `kind` that the migrations do not define (never dropped)."""
        live, desired = self.live[kind], self.desired[kind]
        self.unmanaged.extend("%s %s" % (label or kind, k) for k in sorted(set(live) - set(desired)) if keep(k))

    def in_desired_table(self, kind):
        return lambda key: self.live[kind][key]["table"] in self.desired["table"]

    # --- tables -----------------------------------------------------------
    def tables(self):
        for name, want in sorted(self.desired["table"].items()):
            have = self.live["table"].get(name)
            if have is None:
                self.missing_table(name, want)
            else:
                self.table_attributes(name, want, have)
        self.extra("table")

    def missing_table(self, name, want):
        self.missing_tables.add(name)
        self.add(
            "table",
            "table",
            name,
            "missing",
            "CREATE TABLE %s (LIKE %s.%s INCLUDING DEFAULTS INCLUDING GENERATED INCLUDING IDENTITY "
            "INCLUDING STORAGE INCLUDING COMMENTS INCLUDING COMPRESSION)"
            % (self.rel(name), qident(self.shadow), qident(name)),
        )
        if want["rls"]:
            self.add(
                "table",
                "table",
                name,
                "row level security off",
                "ALTER TABLE %s ENABLE ROW LEVEL SECURITY" % self.rel(name),
            )
        if want["force_rls"]:
            self.add(
                "table",
                "table",
                name,
                "row level security not forced",
                "ALTER TABLE %s FORCE ROW LEVEL SECURITY" % self.rel(name),
            )

    def table_attributes(self, name, want, have):
        rel = self.rel(name)
        if have["owner"] != want["owner"]:
            self.add(
                "owner",
                "table",
                name,
                "owner is %s, not %s" % (have["owner"], want["owner"]),
                "ALTER TABLE %s OWNER TO %s" % (rel, qident(want["owner"])),
            )
        if have["rls"] != want["rls"]:
            self.add(
                "table",
                "table",
                name,
                "row level security %s" % ("off" if want["rls"] else "on"),
                "ALTER TABLE %s %s ROW LEVEL SECURITY" % (rel, "ENABLE" if want["rls"] else "DISABLE"),
            )
        if have["force_rls"] != want["force_rls"]:
            self.add(
                "table",
                "table",
                name,
                "row level security %sforced" % ("not " if want["force_rls"] else ""),
                "ALTER TABLE %s %s ROW LEVEL SECURITY" % (rel, "FORCE" if want["force_rls"] else "NO FORCE"),
            )

    # --- columns ----------------------------------------------------------
    def columns(self):
        ordered = sorted(self.desired["column"].items(), key=lambda kv: (kv[1]["table"], kv[1]["position"]))
        for key, want in ordered:
            if want["table"] in self.missing_tables or want["table"] not in self.live["table"]:
                continue
            have = self.live["column"].get(key)
            if have is None:
                table = self.rel(want["table"])
                self.add(
                    "column",
                    "column",
                    key,
                    "missing",
                    "ALTER TABLE %s ADD COLUMN %s" % (table, column_definition(want)),
                )
            elif self.column_kind_differs(want, have):
                self.add("column", "column", key, "generation or identity differs; cannot be altered in place")
            else:
                self.column_attributes(key, want, have)
        self.extra("column", keep=self.in_desired_table("column"))

    @staticmethod
    def column_kind_differs(want, have):
        return (
            have["generated"] != want["generated"]
            or have["identity"] != want["identity"]
            or (want["generated"] and have["default"] != want["default"])
        )

    def column_attributes(self, key, want, have):
        table, column = self.rel(want["table"]), qident(want["column"])
        if have["type"] != want["type"]:
            self.column_type(key, want, have, table, column)
        if not want["generated"] and have["default"] != want["default"]:
            self.column_default(key, want, have, table, column)
        if have["notnull"] != want["notnull"]:
            self.add(
                "column",
                "column",
                key,
                "NOT NULL %s" % ("missing" if want["notnull"] else "unexpected"),
                "ALTER TABLE %s ALTER COLUMN %s %s NOT NULL" % (table, column, "SET" if want["notnull"] else "DROP"),
            )

    def column_type(self, key, want, have, table, column):
        statement = "ALTER TABLE %s ALTER COLUMN %s TYPE %s USING %s::%s" % (
            table,
            column,
            want["type"],
            column,
            want["type"],
        )
        problem = "type is %s, not %s" % (have["type"], want["type"])
        if self.rewrite:
            self.retyped_tables.add(want["table"])
            self.add("column", "column", key, problem, statement)
            return
        problem += (
            "; changing it rewrites the table under an exclusive lock, so a routine run does not: "
            "run playbooks/migrate.yml with chatflow_migrate_action=rewrite"
        )
        self.repairs.append(Repair("column", "column", key, problem, [statement], deferred=True))

    def column_default(self, key, want, have, table, column):
        if want["default"] is None:
            self.add(
                "column",
                "column",
                key,
                "unexpected default",
                "ALTER TABLE %s ALTER COLUMN %s DROP DEFAULT" % (table, column),
            )
        else:
            self.add(
                "column",
                "column",
                key,
                "default is %s, not %s" % (have["default"], want["default"]),
                "ALTER TABLE %s ALTER COLUMN %s SET DEFAULT %s" % (table, column, want["default"]),
            )

    # --- views over retyped columns ---------------------------------------
    def dependent_views(self, dependent_views, known_views):
        """Views over a table whose column types change are dropped first, and
        rebuilt from the migrations (below, or by the repeatable files).  A view
        the migrations do not define is not dropped: that drift needs a person."""
        if not self.retyped_tables or dependent_views is None:
            return
        for name in sorted(dependent_views(sorted(self.retyped_tables))):
            have = self.live["view"].get(name)
            if have is None:
                continue
            if name in self.desired["view"] or name in (known_views or ()):
                self.recreated_views.add(name)
                self.add(
                    "drop_view",
                    "view",
                    name,
                    "depends on a column whose type changes; rebuilt from the migrations",
                    "DROP %s %s" % (_view_keyword(have["kind"]), self.rel(name)),
                )
            else:
                self.add(
                    "drop_view",
                    "view",
                    name,
                    "not defined by the migrations, and depends on a column whose type must change",
                )

    # --- constraints ------------------------------------------------------
    def constraints(self):
        for key, want in sorted(self.desired["constraint"].items()):
            if want["table"] not in self.live["table"] and want["table"] not in self.missing_tables:
                continue
            self.constraint(key, want, self.live["constraint"].get(key))
        self.extra("constraint", keep=self.in_desired_table("constraint"))

    def constraint(self, key, want, have):
        """A constraint of a new (empty) table is added in the transaction.  On a table that stays, the
        repair runs after the transaction and never holds a lock that blocks writers for longer than a
        catalog update: a primary key or unique constraint gets its index built CONCURRENTLY and
        attached with USING INDEX; a check or foreign key is added NOT VALID, then validated (which
        lets writers go on).  An exclusion constraint is added in the transaction."""
        phase = "foreign_key" if want["type"] == "f" else "constraint"
        table, name = self.rel(want["table"]), qident(want["name"])
        validate = "ALTER TABLE %s VALIDATE CONSTRAINT %s" % (table, name)
        if have is not None and (
            have["definition"] == want["definition"] or have["definition"] in want.get("alternatives", ())
        ):
            if want["validated"] and not have["validated"]:
                self.later(phase, "constraint", key, "not validated", validate)
            return
        problem = "missing" if have is None else "definition is %s" % have["definition"]
        drop = [] if have is None else ["ALTER TABLE %s DROP CONSTRAINT %s" % (table, name)]
        add_sql = "ALTER TABLE %s ADD CONSTRAINT %s %s" % (table, name, want["definition"])
        if want["table"] in self.missing_tables or want["type"] not in ("p", "u", "c", "f"):
            self.add(phase, "constraint", key, problem, *drop, add_sql)
        elif want["type"] in ("p", "u"):
            self.later(phase, "constraint", key, problem, *self.keyed(want, drop))
        else:
            checked = [validate] if want["validated"] else []
            self.later(phase, "constraint", key, problem, *drop, add_sql + " NOT VALID", *checked)

    def keyed(self, want, drop):
        """Build a key's unique index concurrently under a temporary name, then attach it (renamed)."""
        table, name = self.rel(want["table"]), qident(want["name"])
        temporary = want["name"][:56] + "_repair"
        keyword = "PRIMARY KEY" if want["type"] == "p" else "UNIQUE"
        deferrable = re.search(r"(?:NOT )?DEFERRABLE(?: INITIALLY (?:DEFERRED|IMMEDIATE))?", want["definition"])
        attach = "ALTER TABLE %s %sADD CONSTRAINT %s %s USING INDEX %s%s" % (
            table,
            "DROP CONSTRAINT %s, " % name if drop else "",
            name,
            keyword,
            qident(temporary),
            " " + deferrable.group(0) if deferrable else "",
        )
        return [
            "DROP INDEX CONCURRENTLY IF EXISTS %s" % self.rel(temporary),
            concurrent_index(index_named(want["index"], qident(temporary))),
            attach,
        ]

    def later(self, phase, kind, obj, problem, *statements):
        """A repair run after the transaction, each statement on its own (see Repair.concurrent)."""
        self.repairs.append(Repair(phase, kind, obj, problem, statements, concurrent=True))

    # --- views and materialized views -------------------------------------
    def views(self):
        for name, want in sorted(self.desired["view"].items()):
            self.view(name, want, self.live["view"].get(name))
        self.extra("view")

    def view(self, name, want, have):
        keyword = _view_keyword(want["kind"])
        create = "CREATE %s %s AS %s%s" % (
            keyword,
            self.rel(name),
            want["definition"].strip().rstrip(";"),
            " WITH DATA" if want["kind"] == "m" else "",
        )
        if have is None or name in self.recreated_views:
            self.recreated_views.add(name)
            self.add("view", "view", name, "missing" if have is None else "recreated", create)
        elif have["kind"] != want["kind"] or have["definition"] != want["definition"]:
            self.recreated_views.add(name)
            drop = "DROP %s %s" % (_view_keyword(have["kind"]), self.rel(name))
            self.add("view", "view", name, "definition differs", drop, create)
        elif have["owner"] != want["owner"]:
            self.add(
                "owner",
                "view",
                name,
                "owner is %s, not %s" % (have["owner"], want["owner"]),
                "ALTER %s %s OWNER TO %s" % (keyword, self.rel(name), qident(want["owner"])),
            )

    # --- indexes (those backing constraints come with their constraint) ---
    def indexes(self):
        """An index of a table that stays is rebuilt CONCURRENTLY (after the transaction): writers on a
        live table are never blocked.  An index of a table or view built again in this run is
        created in the transaction with it."""
        for name, want in sorted(self.desired["index"].items()):
            if want["on_view"] and "view" not in self.kinds:
                continue
            have = self.live["index"].get(name)
            rebuilt = want["table"] in self.recreated_views or want["table"] in self.missing_tables
            if rebuilt or (have is None and want["on_view"]):
                self.add("index", "index", name, "missing", want["definition"])
            elif have is None:
                self.concurrently(name, "missing", concurrent_index(want["definition"]))
            elif have["definition"] != want["definition"]:
                drop = "DROP INDEX CONCURRENTLY %s" % self.rel(name)
                problem = "definition is %s" % have["definition"]
                self.concurrently(name, problem, drop, concurrent_index(want["definition"]))
            elif want["valid"] and not have["valid"]:
                self.concurrently(name, "invalid", "REINDEX INDEX CONCURRENTLY %s" % self.rel(name))
        relations = set(self.desired["table"]) | set(self.desired["view"])
        self.extra("index", keep=lambda n: self.live["index"][n]["table"] in relations)

    def concurrently(self, name, problem, *statements):
        self.later("index", "index", name, problem, *statements)

    # --- functions --------------------------------------------------------
    def functions(self):
        for signature, want in sorted(self.desired["function"].items()):
            have = self.live["function"].get(signature)
            if have is None or have["definition"] != want["definition"]:
                problem = "missing" if have is None else "definition differs"
                self.add("function", "function", signature, problem, want["definition"])
            elif have["owner"] != want["owner"]:
                self.add(
                    "owner",
                    "function",
                    signature,
                    "owner is %s, not %s" % (have["owner"], want["owner"]),
                    "ALTER %s %s OWNER TO %s" % (want["prokind"], signature, qident(want["owner"])),
                )
        self.extra("function")

    # --- triggers ---------------------------------------------------------
    def triggers(self):
        for key, want in sorted(self.desired["trigger"].items()):
            have = self.live["trigger"].get(key)
            table, name = self.rel(want["table"]), qident(want["name"])
            if have is None or have["definition"] != want["definition"]:
                create = re.sub(r"^CREATE TRIGGER ", "CREATE OR REPLACE TRIGGER ", want["definition"])
                self.add("trigger", "trigger", key, "missing" if have is None else "definition differs", create)
                if want["enabled"] != "O":
                    self.add("trigger", "trigger", key, "enabled state", _enable_trigger(table, name, want["enabled"]))
            elif have["enabled"] != want["enabled"]:
                problem = "disabled" if have["enabled"] == "D" else "enabled state is %s" % have["enabled"]
                self.add("trigger", "trigger", key, problem, _enable_trigger(table, name, want["enabled"]))
        self.extra("trigger", keep=self.in_desired_table("trigger"))

    # --- row level security policies -------------------------------------
    def policies(self):
        for key, want in sorted(self.desired["policy"].items()):
            have = self.live["policy"].get(key)
            if have == want:
                continue
            statements = ["DROP POLICY %s ON %s" % (qident(want["name"]), self.rel(want["table"]))] if have else []
            problem = "missing" if have is None else "definition differs"
            self.add("policy", "policy", key, problem, *statements, self.create_policy(want))
        self.extra("policy")

    def create_policy(self, want):
        create = "CREATE POLICY %s ON %s AS %s FOR %s TO %s" % (
            qident(want["name"]),
            self.rel(want["table"]),
            want["permissive"],
            want["cmd"],
            ", ".join(r if r == "public" else qident(r) for r in want["roles"].split(",")),
        )
        if want["qual"] is not None:
            create += " USING (%s)" % want["qual"]
        if want["check"] is not None:
            create += " WITH CHECK (%s)" % want["check"]
        return create

    # --- privileges -------------------------------------------------------
    def privileges(self):
        """What the migrations grant is restored; PUBLIC gets nothing they do
        not give it.  Objects recreated above get the grants again."""
        self.grants()
        self.public_revokes()
        self.new_routines_revokes()

    def grants(self):
        recreated = self.missing_tables | self.recreated_views
        grants = {}
        for key, want in sorted(self.desired["acl"].items()):
            if key not in self.live["acl"] or want["relation"] in recreated:
                group = (want["objtype"], want["object"], want["grantee"], want["grantable"])
                grants.setdefault(group, []).append(want["privilege"])
        for (objtype, obj, grantee, grantable), privileges in sorted(grants.items()):
            self.add(
                "acl",
                "acl",
                "%s %s" % (objtype.lower(), obj),
                "%s lacks %s" % (grantee, ", ".join(privileges)),
                "GRANT %s ON %s %s TO %s%s"
                % (
                    ", ".join(privileges),
                    objtype,
                    obj,
                    grantee if grantee == "PUBLIC" else qident(grantee),
                    " WITH GRANT OPTION" if grantable else "",
                ),
            )

    def managed_by_migrations(self, have):
        if have["objtype"] in ("FUNCTION", "PROCEDURE"):
            return have["object"] in self.desired["function"]
        return have["relation"] in self.desired["table"] or have["relation"] in self.desired["view"]

    def public_revokes(self):
        revokes = {}
        for key, have in sorted(self.live["acl"].items()):
            if have["grantee"] != "PUBLIC" or key in self.desired["acl"]:
                continue
            if self.managed_by_migrations(have):
                revokes.setdefault((have["objtype"], have["object"]), []).append(have["privilege"])
        for (objtype, obj), privileges in sorted(revokes.items()):
            self.add(
                "acl",
                "acl",
                "%s %s" % (objtype.lower(), obj),
                "PUBLIC has %s" % ", ".join(privileges),
                "REVOKE %s ON %s %s FROM PUBLIC" % (", ".join(privileges), objtype, obj),
            )

    def new_routines_revokes(self):
        """A routine created afresh gets EXECUTE for PUBLIC by default (CREATE OR
        REPLACE of an existing one keeps its privileges): take it back unless
        the migrations give it."""
        for repair in [r for r in self.repairs if r.kind == "function" and r.problem == "missing"]:
            want = self.desired["function"][repair.object]
            if "%s %s PUBLIC EXECUTE" % (want["prokind"], repair.object) in self.desired["acl"]:
                continue
            self.add(
                "acl",
                "acl",
                "%s %s" % (want["prokind"].lower(), repair.object),
                "a new routine gets EXECUTE for PUBLIC",
                "REVOKE EXECUTE ON %s %s FROM PUBLIC" % (want["prokind"], repair.object),
            )


def index_named(definition, name):
    """pg_get_indexdef's CREATE [UNIQUE] INDEX <old> ON ... with another (quoted) name."""
    return re.sub(
        r'^(CREATE (?:UNIQUE )?INDEX )(?:"(?:[^"]|"")+"|[^\s"]+)( ON )',
        lambda m: m.group(1) + name + m.group(2),
        definition,
    )


def concurrent_index(definition):
    """pg_get_indexdef's CREATE [UNIQUE] INDEX as CREATE [UNIQUE] INDEX CONCURRENTLY."""
    return re.sub(r"^CREATE (UNIQUE )?INDEX ", r"CREATE \1INDEX CONCURRENTLY ", definition, count=1)


def _enable_trigger(table, name, state):
    keyword = {"O": "ENABLE", "D": "DISABLE", "A": "ENABLE ALWAYS", "R": "ENABLE REPLICA"}[state]
    return "ALTER TABLE %s %s TRIGGER %s" % (table, keyword, name)


def column_definition(col):
    """The column clause of ADD COLUMN for a snapshot column record."""
    parts = [qident(col["column"]), col["type"]]
    if col["generated"] == "s":
        parts.append("GENERATED ALWAYS AS (%s) STORED" % col["default"])
    elif col["identity"]:
        parts.append("GENERATED %s AS IDENTITY" % ("ALWAYS" if col["identity"] == "a" else "BY DEFAULT"))
    elif col["default"] is not None:
        parts.append("DEFAULT %s" % col["default"])
    if col["notnull"] and not col["identity"]:
        parts.append("NOT NULL")
    return " ".join(parts)
