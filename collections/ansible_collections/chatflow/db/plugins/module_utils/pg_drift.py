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
        SELECT c.relname, co.conname, co.contype, pg_get_constraintdef(co.oid), co.convalidated
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
               a.privilege_type, a.is_grantable
          FROM pg_class c
          JOIN pg_namespace n ON n.oid = c.relnamespace
          CROSS JOIN LATERAL aclexplode(coalesce(c.relacl, acldefault('r', c.relowner))) a
         WHERE n.nspname = %(schema)s AND c.relkind IN ('r', 'p', 'v', 'm', 'S') AND a.grantee <> c.relowner
        UNION ALL
        SELECT CASE p.prokind WHEN 'p' THEN 'PROCEDURE' ELSE 'FUNCTION' END, p.oid::regprocedure::text,
               CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE pg_get_userbyid(a.grantee) END,
               a.privilege_type, a.is_grantable
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
    """Quote an identifier the way quote_ident does."""
    if re.match(r"^[a-z_][a-z0-9_$]*$", name) and name not in _RESERVED:
        return name
    return '"' + name.replace('"', '""') + '"'


# Enough reserved words to be safe for the names we meet (quote_ident quotes these).
_RESERVED = frozenset(
    (
        "all",
        "analyse",
        "analyze",
        "and",
        "any",
        "array",
        "as",
        "asc",
        "asymmetric",
        "both",
        "case",
        "cast",
        "check",
        "collate",
        "column",
        "constraint",
        "create",
        "current_catalog",
        "current_date",
        "current_role",
        "current_time",
        "current_timestamp",
        "current_user",
        "default",
        "deferrable",
        "desc",
        "distinct",
        "do",
        "else",
        "end",
        "except",
        "false",
        "fetch",
        "for",
        "foreign",
        "from",
        "grant",
        "group",
        "having",
        "in",
        "initially",
        "intersect",
        "into",
        "lateral",
        "leading",
        "limit",
        "localtime",
        "localtimestamp",
        "not",
        "null",
        "offset",
        "on",
        "only",
        "or",
        "order",
        "placing",
        "primary",
        "references",
        "returning",
        "select",
        "session_user",
        "some",
        "symmetric",
        "table",
        "then",
        "to",
        "trailing",
        "true",
        "union",
        "unique",
        "user",
        "using",
        "variadic",
        "when",
        "where",
        "window",
        "with",
    )
)


def rename_schema(text, source, target):
    """Rewrite `source.` qualifications in a catalog text to `target.`."""
    if text is None or source == target:
        return text
    pattern = re.compile(r'(?<![A-Za-z0-9_$"])(?:%s|"%s")\.' % (re.escape(source), re.escape(source)))
    return pattern.sub(qident(target) + ".", text)


def read_snapshot(cursor, schema, as_schema):
    """Read the catalog of `schema` and express it as if it were `as_schema`.

    Returns {kind: {key: record}}.  The cursor's transaction must have
    search_path = pg_catalog set by the caller.
    """
    snap = dict((kind, {}) for kind in ALL_KINDS)

    def r(text):
        return rename_schema(text, schema, as_schema)

    for kind in ALL_KINDS:
        cursor.execute(SNAPSHOT_SQL[kind], {"schema": schema})
        rows = cursor.fetchall()
        target = snap[kind]
        if kind == "table":
            for name, owner, rls, force in rows:
                target[name] = dict(owner=owner, rls=bool(rls), force_rls=bool(force))
        elif kind == "column":
            for table, column, ctype, notnull, default, generated, identity, attnum in rows:
                target["%s.%s" % (table, column)] = dict(
                    table=table,
                    column=column,
                    type=r(ctype),
                    notnull=bool(notnull),
                    default=r(default),
                    generated=generated or "",
                    identity=identity or "",
                    position=attnum,
                )
        elif kind == "constraint":
            for table, name, contype, definition, validated in rows:
                target["%s.%s" % (table, name)] = dict(
                    table=table, name=name, type=contype, definition=r(definition), validated=bool(validated)
                )
        elif kind == "index":
            for name, table, relkind, definition, valid in rows:
                target[name] = dict(
                    table=table, on_view=relkind in ("m", "v"), definition=r(definition), valid=bool(valid)
                )
        elif kind == "view":
            for name, relkind, definition, owner in rows:
                target[name] = dict(kind=relkind, definition=r(definition), owner=owner)
        elif kind == "function":
            for signature, definition, owner, prokind in rows:
                target[r(signature)] = dict(definition=r(definition), owner=owner, prokind=prokind)
        elif kind == "trigger":
            for table, name, definition, enabled in rows:
                target["%s.%s" % (table, name)] = dict(
                    table=table, name=name, definition=r(definition), enabled=enabled
                )
        elif kind == "policy":
            for table, name, permissive, cmd, roles, qual, check in rows:
                target["%s.%s" % (table, name)] = dict(
                    table=table, name=name, permissive=permissive, cmd=cmd, roles=roles, qual=r(qual), check=r(check)
                )
        elif kind == "acl":
            for objtype, name, grantee, privilege, grantable in rows:
                obj = r(name) if objtype in ("FUNCTION", "PROCEDURE") else _qualify(r(name), as_schema)
                target["%s %s %s %s" % (objtype, obj, grantee, privilege)] = dict(
                    objtype=objtype, object=obj, grantee=grantee, privilege=privilege, grantable=bool(grantable)
                )
    return snap


def _qualify(name, schema):
    """regclass text is unqualified for pg_catalog-visible names only; ours always have a dot."""
    return name if "." in name else "%s.%s" % (qident(schema), name)


class Repair(object):
    """One drifted object and the statements that restore it."""

    __slots__ = ("kind", "object", "phase", "problem", "statements")

    def __init__(self, phase, kind, obj, problem, statements):
        self.phase = phase
        self.kind = kind
        self.object = obj
        self.problem = problem
        self.statements = list(statements)

    def as_dict(self):
        return dict(kind=self.kind, object=self.object, problem=self.problem, statements=self.statements)


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
    desired, live, schema, *, shadow=SHADOW_SCHEMA, kinds=ALL_KINDS, dependent_views=None, known_views=None
):
    """Compare two snapshots; return (repairs, unmanaged).

    desired: the shadow's snapshot, renamed to `schema`; live: the live
    schema's.  dependent_views(tables) -> names of live views over those
    tables (they must be dropped and recreated around a column type change);
    None means there are none.  repairs are Repair objects sorted by phase.
    """
    q = qident(schema)
    repairs = []
    unmanaged = []
    kinds = set(kinds)

    def add(phase, kind, obj, problem, *statements):
        repairs.append(Repair(phase, kind, obj, problem, statements))

    def rel(name):
        return "%s.%s" % (q, qident(name))

    # Tables.
    missing_tables = set()
    if "table" in kinds:
        for name, want in sorted(desired["table"].items()):
            have = live["table"].get(name)
            if have is None:
                missing_tables.add(name)
                add(
                    "table",
                    "table",
                    name,
                    "missing",
                    "CREATE TABLE %s (LIKE %s.%s INCLUDING DEFAULTS INCLUDING GENERATED INCLUDING IDENTITY "
                    "INCLUDING STORAGE INCLUDING COMMENTS INCLUDING COMPRESSION)"
                    % (rel(name), qident(shadow), qident(name)),
                )
                if want["rls"]:
                    add(
                        "table",
                        "table",
                        name,
                        "row level security off",
                        "ALTER TABLE %s ENABLE ROW LEVEL SECURITY" % rel(name),
                    )
                if want["force_rls"]:
                    add(
                        "table",
                        "table",
                        name,
                        "row level security not forced",
                        "ALTER TABLE %s FORCE ROW LEVEL SECURITY" % rel(name),
                    )
                continue
            if have["owner"] != want["owner"]:
                add(
                    "owner",
                    "table",
                    name,
                    "owner is %s, not %s" % (have["owner"], want["owner"]),
                    "ALTER TABLE %s OWNER TO %s" % (rel(name), qident(want["owner"])),
                )
            if have["rls"] != want["rls"]:
                add(
                    "table",
                    "table",
                    name,
                    "row level security %s" % ("off" if want["rls"] else "on"),
                    "ALTER TABLE %s %s ROW LEVEL SECURITY" % (rel(name), "ENABLE" if want["rls"] else "DISABLE"),
                )
            if have["force_rls"] != want["force_rls"]:
                add(
                    "table",
                    "table",
                    name,
                    "row level security %sforced" % ("not " if want["force_rls"] else ""),
                    "ALTER TABLE %s %s ROW LEVEL SECURITY" % (rel(name), "FORCE" if want["force_rls"] else "NO FORCE"),
                )
        unmanaged.extend("table %s" % n for n in sorted(set(live["table"]) - set(desired["table"])))

    # Columns.
    retyped_tables = set()
    if "column" in kinds:
        for key, want in sorted(desired["column"].items(), key=lambda kv: (kv[1]["table"], kv[1]["position"])):
            if want["table"] in missing_tables or want["table"] not in live["table"]:
                continue
            have = live["column"].get(key)
            table, column = rel(want["table"]), qident(want["column"])
            if have is None:
                add(
                    "column",
                    "column",
                    key,
                    "missing",
                    "ALTER TABLE %s ADD COLUMN %s" % (table, column_definition(want)),
                )
                continue
            if (
                have["generated"] != want["generated"]
                or have["identity"] != want["identity"]
                or (want["generated"] and have["default"] != want["default"])
            ):
                add(
                    "column",
                    "column",
                    key,
                    "generation or identity differs; cannot be altered in place",
                )
                continue
            if have["type"] != want["type"]:
                retyped_tables.add(want["table"])
                add(
                    "column",
                    "column",
                    key,
                    "type is %s, not %s" % (have["type"], want["type"]),
                    "ALTER TABLE %s ALTER COLUMN %s TYPE %s USING %s::%s"
                    % (table, column, want["type"], column, want["type"]),
                )
            if not want["generated"] and have["default"] != want["default"]:
                if want["default"] is None:
                    add(
                        "column",
                        "column",
                        key,
                        "unexpected default",
                        "ALTER TABLE %s ALTER COLUMN %s DROP DEFAULT" % (table, column),
                    )
                else:
                    add(
                        "column",
                        "column",
                        key,
                        "default is %s, not %s" % (have["default"], want["default"]),
                        "ALTER TABLE %s ALTER COLUMN %s SET DEFAULT %s" % (table, column, want["default"]),
                    )
            if have["notnull"] != want["notnull"]:
                add(
                    "column",
                    "column",
                    key,
                    "NOT NULL %s" % ("missing" if want["notnull"] else "unexpected"),
                    "ALTER TABLE %s ALTER COLUMN %s %s NOT NULL"
                    % (table, column, "SET" if want["notnull"] else "DROP"),
                )
        unmanaged.extend(
            "column %s" % k
            for k in sorted(set(live["column"]) - set(desired["column"]))
            if live["column"][k]["table"] in desired["table"]
        )

    # Views over a table whose column types change are dropped first, and
    # rebuilt from the migrations (below, or by the repeatable files).  A view
    # the migrations do not define is not dropped: that drift needs a person.
    recreated_views = set()
    if retyped_tables and dependent_views is not None:
        for name in sorted(dependent_views(sorted(retyped_tables))):
            have = live["view"].get(name)
            if have is None:
                continue
            if name in desired["view"] or name in (known_views or ()):
                recreated_views.add(name)
                add(
                    "drop_view",
                    "view",
                    name,
                    "depends on a column whose type changes; rebuilt from the migrations",
                    "DROP %s %s" % ("MATERIALIZED VIEW" if have["kind"] == "m" else "VIEW", rel(name)),
                )
            else:
                add(
                    "drop_view",
                    "view",
                    name,
                    "not defined by the migrations, and depends on a column whose type must change",
                )

    # Constraints.
    if "constraint" in kinds:
        for key, want in sorted(desired["constraint"].items()):
            if want["table"] not in live["table"] and want["table"] not in missing_tables:
                continue
            have = live["constraint"].get(key)
            phase = "foreign_key" if want["type"] == "f" else "constraint"
            table, name = rel(want["table"]), qident(want["name"])
            add_sql = "ALTER TABLE %s ADD CONSTRAINT %s %s" % (table, name, want["definition"])
            if have is None:
                add(phase, "constraint", key, "missing", add_sql)
            elif have["definition"] != want["definition"] and have["definition"] not in want.get("alternatives", ()):
                add(
                    phase,
                    "constraint",
                    key,
                    "definition is %s" % have["definition"],
                    "ALTER TABLE %s DROP CONSTRAINT %s" % (table, name),
                    add_sql,
                )
            elif want["validated"] and not have["validated"]:
                add(phase, "constraint", key, "not validated", "ALTER TABLE %s VALIDATE CONSTRAINT %s" % (table, name))
        unmanaged.extend(
            "constraint %s" % k
            for k in sorted(set(live["constraint"]) - set(desired["constraint"]))
            if live["constraint"][k]["table"] in desired["table"]
        )

    # Views and materialized views.
    if "view" in kinds:
        for name, want in sorted(desired["view"].items()):
            have = live["view"].get(name)
            keyword = "MATERIALIZED VIEW" if want["kind"] == "m" else "VIEW"
            create = "CREATE %s %s AS %s%s" % (
                keyword,
                rel(name),
                want["definition"].strip().rstrip(";"),
                " WITH DATA" if want["kind"] == "m" else "",
            )
            if have is None or name in recreated_views:
                recreated_views.add(name)
                add("view", "view", name, "missing" if have is None else "recreated", create)
            elif have["kind"] != want["kind"] or have["definition"] != want["definition"]:
                recreated_views.add(name)
                old = "MATERIALIZED VIEW" if have["kind"] == "m" else "VIEW"
                add("view", "view", name, "definition differs", "DROP %s %s" % (old, rel(name)), create)
            elif have["owner"] != want["owner"]:
                add(
                    "owner",
                    "view",
                    name,
                    "owner is %s, not %s" % (have["owner"], want["owner"]),
                    "ALTER %s %s OWNER TO %s" % (keyword, rel(name), qident(want["owner"])),
                )
        unmanaged.extend("view %s" % n for n in sorted(set(live["view"]) - set(desired["view"])))

    # Indexes (those backing constraints come with their constraint).
    if "index" in kinds:
        for name, want in sorted(desired["index"].items()):
            if want["on_view"] and "view" not in kinds:
                continue
            have = live["index"].get(name)
            if want["table"] in recreated_views or have is None:
                add("index", "index", name, "missing", want["definition"])
            elif have["definition"] != want["definition"]:
                add(
                    "index",
                    "index",
                    name,
                    "definition is %s" % have["definition"],
                    "DROP INDEX %s" % rel(name),
                    want["definition"],
                )
            elif want["valid"] and not have["valid"]:
                add("index", "index", name, "invalid", "REINDEX INDEX %s" % rel(name))
        unmanaged.extend(
            "index %s" % n
            for n in sorted(set(live["index"]) - set(desired["index"]))
            if live["index"][n]["table"] in desired["table"] or live["index"][n]["table"] in desired["view"]
        )

    # Functions.
    if "function" in kinds:
        for signature, want in sorted(desired["function"].items()):
            have = live["function"].get(signature)
            if have is None or have["definition"] != want["definition"]:
                add(
                    "function",
                    "function",
                    signature,
                    "missing" if have is None else "definition differs",
                    want["definition"],
                )
            elif have["owner"] != want["owner"]:
                add(
                    "owner",
                    "function",
                    signature,
                    "owner is %s, not %s" % (have["owner"], want["owner"]),
                    "ALTER %s %s OWNER TO %s" % (want["prokind"], signature, qident(want["owner"])),
                )
        unmanaged.extend("function %s" % s for s in sorted(set(live["function"]) - set(desired["function"])))

    # Triggers.
    if "trigger" in kinds:
        for key, want in sorted(desired["trigger"].items()):
            have = live["trigger"].get(key)
            table, name = rel(want["table"]), qident(want["name"])
            if have is None or have["definition"] != want["definition"]:
                create = re.sub(r"^CREATE TRIGGER ", "CREATE OR REPLACE TRIGGER ", want["definition"])
                add("trigger", "trigger", key, "missing" if have is None else "definition differs", create)
                if want["enabled"] != "O":
                    add("trigger", "trigger", key, "enabled state", _enable_trigger(table, name, want["enabled"]))
            elif have["enabled"] != want["enabled"]:
                add(
                    "trigger",
                    "trigger",
                    key,
                    "disabled" if have["enabled"] == "D" else "enabled state is %s" % have["enabled"],
                    _enable_trigger(table, name, want["enabled"]),
                )
        unmanaged.extend(
            "trigger %s" % k
            for k in sorted(set(live["trigger"]) - set(desired["trigger"]))
            if live["trigger"][k]["table"] in desired["table"]
        )

    # Row level security policies.
    if "policy" in kinds:
        for key, want in sorted(desired["policy"].items()):
            have = live["policy"].get(key)
            if have == want:
                continue
            statements = ["DROP POLICY %s ON %s" % (qident(want["name"]), rel(want["table"]))] if have else []
            create = "CREATE POLICY %s ON %s AS %s FOR %s TO %s" % (
                qident(want["name"]),
                rel(want["table"]),
                want["permissive"],
                want["cmd"],
                ", ".join(r if r == "public" else qident(r) for r in want["roles"].split(",")),
            )
            if want["qual"] is not None:
                create += " USING (%s)" % want["qual"]
            if want["check"] is not None:
                create += " WITH CHECK (%s)" % want["check"]
            add("policy", "policy", key, "missing" if have is None else "definition differs", *statements, create)
        unmanaged.extend("policy %s" % k for k in sorted(set(live["policy"]) - set(desired["policy"])))

    # Privileges: what the migrations grant is restored; PUBLIC gets nothing
    # they do not give it.  Objects recreated above get the grants again.
    if "acl" in kinds:
        recreated = set(rel(n) for n in missing_tables | recreated_views)
        grants = {}
        for key, want in sorted(desired["acl"].items()):
            if key not in live["acl"] or want["object"] in recreated:
                group = (want["objtype"], want["object"], want["grantee"], want["grantable"])
                grants.setdefault(group, []).append(want["privilege"])
        for (objtype, obj, grantee, grantable), privileges in sorted(grants.items()):
            add(
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
        revokes = {}
        for key, have in sorted(live["acl"].items()):
            if have["grantee"] == "PUBLIC" and key not in desired["acl"]:
                if have["objtype"] in ("FUNCTION", "PROCEDURE") and have["object"] not in desired["function"]:
                    continue
                if have["objtype"] not in ("FUNCTION", "PROCEDURE") and have["object"] not in set(
                    rel(n) for n in list(desired["table"]) + list(desired["view"])
                ):
                    continue
                revokes.setdefault((have["objtype"], have["object"]), []).append(have["privilege"])
        for (objtype, obj), privileges in sorted(revokes.items()):
            add(
                "acl",
                "acl",
                "%s %s" % (objtype.lower(), obj),
                "PUBLIC has %s" % ", ".join(privileges),
                "REVOKE %s ON %s %s FROM PUBLIC" % (", ".join(privileges), objtype, obj),
            )
        # A routine created afresh gets EXECUTE for PUBLIC by default (CREATE OR
        # REPLACE of an existing one keeps its privileges): take it back unless
        # the migrations give it.
        for repair in [r for r in repairs if r.kind == "function" and r.problem == "missing"]:
            want = desired["function"][repair.object]
            public_execute = "%s %s PUBLIC EXECUTE" % (want["prokind"], repair.object)
            if public_execute not in desired["acl"]:
                add(
                    "acl",
                    "acl",
                    "%s %s" % (want["prokind"].lower(), repair.object),
                    "a new routine gets EXECUTE for PUBLIC",
                    "REVOKE EXECUTE ON %s %s FROM PUBLIC" % (want["prokind"], repair.object),
                )

    order = dict((p, i) for i, p in enumerate(PHASES))
    repairs.sort(key=lambda rep: order[rep.phase])
    return repairs, unmanaged


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
