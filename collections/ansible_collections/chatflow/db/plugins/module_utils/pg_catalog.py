# -*- coding: utf-8 -*-
# Copyright: ChatFlow platform team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Pure helpers and catalog queries shared by the chatflow.db modules.

Nothing in here talks to Ansible, so the pure parts are unit-tested directly.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import hashlib
import re

try:  # psycopg 3, when community.postgresql connects with it
    from psycopg.rows import tuple_row
except ImportError:
    tuple_row = None

# A custom setting must be namespaced ("prefix.name"), as PostgreSQL requires
# for placeholders; we only allow plain identifier characters.
_SETTING_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*\.[A-Za-z_][A-Za-z0-9_]*$")
_IDENT_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")


def normalise_sql(text):
    """Return the SQL text with CRLF / CR line endings turned into LF."""
    return text.replace("\r\n", "\n").replace("\r", "\n")


def sql_checksum(texts):
    """sha256 over one or more SQL texts, line endings normalised.

    The texts are joined with a NUL separator, so moving a statement from the
    end of one file to the start of the next still changes the checksum.
    """
    digest = hashlib.sha256()
    for index, text in enumerate(texts):
        if index:
            digest.update(b"\0")
        digest.update(normalise_sql(text).encode("utf-8"))
    return digest.hexdigest()


def valid_setting_name(name):
    return bool(_SETTING_RE.match(name or ""))


def valid_identifier(name):
    return bool(_IDENT_RE.match(name or ""))


def line_of_position(text, position):
    """1-based line number of a 1-based character position in text.

    PostgreSQL reports an error's place as a character position in the
    statement string; operators want a line number of the file.
    """
    if not position or position < 1:
        return None
    return text.count("\n", 0, position - 1) + 1


def describe_error(exc, path, text, statement, offset):
    """A message that names the file, the line and the failing statement."""
    message = str(getattr(exc, "pgerror", None) or exc).strip()
    diag = getattr(exc, "diag", None)
    position = None
    if diag is not None and getattr(diag, "statement_position", None):
        try:
            position = int(diag.statement_position)
        except (TypeError, ValueError):
            position = None
    if position is None:
        position = code_offset(statement) + 1
    line = line_of_position(text, offset + position)
    msg = "SQL failed in %s line %s: %s\n--- failing statement ---\n%s" % (
        path,
        line,
        message,
        statement.strip(),
    )
    return msg, line


_DOLLAR_TAG_RE = re.compile(r"\$([A-Za-z_][A-Za-z0-9_]*)?\$")


def split_statements(text):
    """Split SQL text into statements at top-level semicolons.

    Understands what psql understands for our files: '...' and E'...'
    strings, "..." identifiers, $tag$...$tag$ bodies, -- comments and nested
    /* */ comments.  Returns (statement, start_offset) pairs; statements that
    hold only comments and whitespace are dropped.
    """
    statements = []
    start = 0
    i = 0
    while i < len(text):
        if text[i] == ";":
            statements.append((text[start : i + 1], start))
            start = i + 1
            i += 1
        else:
            i = _skip_token(text, i)
    statements.append((text[start:], start))
    return [(stmt, offset) for stmt, offset in statements if _has_code(stmt)]


def _skip_token(text, i):
    """Index just after the token at i: a comment, a quoted string or
    identifier, a dollar-quoted body, or else one character."""
    pair = text[i : i + 2]
    if pair == "--":
        end = text.find("\n", i)
        return len(text) if end < 0 else end + 1
    if pair == "/*":
        return _skip_block_comment(text, i)
    if text[i] in ("'", '"'):
        return _skip_quoted(text, i)
    if text[i] == "$":
        return _skip_dollar_quoted(text, i)
    return i + 1


def _skip_block_comment(text, i):
    """Past the /* */ comment at i, which may nest."""
    depth = 0
    while i < len(text):
        pair = text[i : i + 2]
        if pair == "/*":
            depth += 1
            i += 2
        elif pair == "*/":
            depth -= 1
            i += 2
            if depth == 0:
                return i
        else:
            i += 1
    return len(text)


def _skip_quoted(text, i):
    """Past the '...' string or "..." identifier at i (doubled quotes, E'' escapes)."""
    quote = text[i]
    i += 1
    while i < len(text):
        if text[i] == quote:
            if text[i + 1 : i + 2] == quote:  # doubled quote
                i += 2
                continue
            break
        if quote == "'" and text[i] == "\\" and _is_escape_string(text, i):
            i += 2
            continue
        i += 1
    return i + 1


def _skip_dollar_quoted(text, i):
    """Past the $tag$...$tag$ body at i, or one character when $ starts none."""
    match = _DOLLAR_TAG_RE.match(text, i)
    if not match or (i > 0 and (text[i - 1].isalnum() or text[i - 1] == "_")):
        return i + 1
    end = text.find(match.group(0), match.end())
    return len(text) if end < 0 else end + len(match.group(0))


def _is_escape_string(text, index):
    """Whether the string containing index is an E'...' string (backslash escapes)."""
    quote = text.rfind("'", 0, index)
    while quote > 0 and text[quote - 1] == "'":
        quote = text.rfind("'", 0, quote - 1)
    return quote > 0 and text[quote - 1] in "eE"


def code_offset(statement):
    """Offset of the first character of code in a statement (after comments)."""
    offset = 0
    for line in statement.split("\n"):
        stripped = line.strip()
        if stripped and not stripped.startswith("--"):
            return offset + line.index(stripped[0])
        offset += len(line) + 1
    return 0


def _has_code(statement):
    for line in statement.split("\n"):
        stripped = line.strip()
        if stripped and not stripped.startswith("--") and stripped != ";":
            return True
    return False


# The catalog fingerprint, the one definition of it: everything that defines
# the objects of the tracked schemas, one text line each, sorted and hashed.
# pg_migrate records it to skip its drift check when nothing moved, and
# host_fingerprint folds it into the host's state.  Privileges count only
# where PUBLIC holds them (the migrations revoke those; every other grant is
# managed by community.postgresql.postgresql_privs and would make each grant a
# "drift").  Names come out schema-qualified because the query runs with
# search_path = pg_catalog.  No placeholders: psql runs it as it is.
_FINGERPRINT_TEMPLATE = """
SELECT md5(coalesce(string_agg(item, E'\\n' ORDER BY item), '')) AS fingerprint,
       count(*) AS items
FROM (
    SELECT format('schema %s owner=%s', n.nspname, pg_get_userbyid(n.nspowner))
      FROM pg_namespace n WHERE n.nspname = ANY(@SCHEMAS@)
    UNION ALL
    SELECT format('rel %s.%s kind=%s owner=%s persistence=%s rls=%s force_rls=%s', n.nspname, c.relname,
                  c.relkind, pg_get_userbyid(c.relowner), c.relpersistence, c.relrowsecurity,
                  c.relforcerowsecurity)
      FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
     WHERE n.nspname = ANY(@SCHEMAS@) AND c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f')
    UNION ALL
    SELECT format('col %s.%s.%s %s notnull=%s default=%s generated=%s identity=%s',
                  n.nspname, c.relname, a.attname, format_type(a.atttypid, a.atttypmod),
                  a.attnotnull, pg_get_expr(d.adbin, d.adrelid), a.attgenerated, a.attidentity)
      FROM pg_attribute a
      JOIN pg_class c ON c.oid = a.attrelid
      JOIN pg_namespace n ON n.oid = c.relnamespace
      LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
     WHERE n.nspname = ANY(@SCHEMAS@) AND c.relkind IN ('r', 'p', 'v', 'm', 'f')
       AND a.attnum > 0 AND NOT a.attisdropped
    UNION ALL
    SELECT format('con %s.%s %s %s validated=%s', n.nspname, c.relname, co.conname,
                  pg_get_constraintdef(co.oid), co.convalidated)
      FROM pg_constraint co
      JOIN pg_class c ON c.oid = co.conrelid
      JOIN pg_namespace n ON n.oid = c.relnamespace
     WHERE n.nspname = ANY(@SCHEMAS@)
    UNION ALL
    SELECT format('idx %s valid=%s ready=%s', pg_get_indexdef(i.indexrelid), i.indisvalid, i.indisready)
      FROM pg_index i
      JOIN pg_class c ON c.oid = i.indexrelid
      JOIN pg_namespace n ON n.oid = c.relnamespace
     WHERE n.nspname = ANY(@SCHEMAS@)
    UNION ALL
    SELECT format('trg %s enabled=%s', pg_get_triggerdef(t.oid), t.tgenabled)
      FROM pg_trigger t
      JOIN pg_class c ON c.oid = t.tgrelid
      JOIN pg_namespace n ON n.oid = c.relnamespace
     WHERE n.nspname = ANY(@SCHEMAS@) AND NOT t.tgisinternal
    UNION ALL
    SELECT format('policy %s.%s %s permissive=%s cmd=%s roles=%s using=%s check=%s', p.schemaname,
                  p.tablename, p.policyname, p.permissive, p.cmd, p.roles, p.qual, p.with_check)
      FROM pg_policies p WHERE p.schemaname = ANY(@SCHEMAS@)
    UNION ALL
    SELECT format('fn %s owner=%s def=%s', p.oid::regprocedure, pg_get_userbyid(p.proowner),
                  md5(pg_get_functiondef(p.oid)))
      FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
     WHERE n.nspname = ANY(@SCHEMAS@) AND p.prokind IN ('f', 'p')
    UNION ALL
    SELECT format('view %s.%s %s', n.nspname, c.relname, md5(pg_get_viewdef(c.oid)))
      FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
     WHERE n.nspname = ANY(@SCHEMAS@) AND c.relkind IN ('v', 'm')
    UNION ALL
    SELECT format('public-acl %s %s grantable=%s', c.oid::regclass, a.privilege_type, a.is_grantable)
      FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
     CROSS JOIN LATERAL aclexplode(coalesce(c.relacl, acldefault('r', c.relowner))) a
     WHERE n.nspname = ANY(@SCHEMAS@) AND c.relkind IN ('r', 'p', 'v', 'm', 'S') AND a.grantee = 0
    UNION ALL
    SELECT format('public-acl %s %s grantable=%s', p.oid::regprocedure, a.privilege_type, a.is_grantable)
      FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
     CROSS JOIN LATERAL aclexplode(coalesce(p.proacl, acldefault('f', p.proowner))) a
     WHERE n.nspname = ANY(@SCHEMAS@) AND p.prokind IN ('f', 'p') AND a.grantee = 0
    UNION ALL
    SELECT format('ext %s %s schema=%s', e.extname, e.extversion, e.extnamespace::regnamespace)
      FROM pg_extension e
) AS f (item)
"""


def catalog_fingerprint_sql(schemas):
    """The fingerprint query over `schemas` (valid identifiers), as one statement without placeholders.

    It returns one row: (md5 of the catalog lines, number of lines).
    """
    for name in schemas:
        if not valid_identifier(name):
            raise ValueError("not a schema name: %r" % (name,))
    literal = "ARRAY[%s]::name[]" % ", ".join("'%s'" % name for name in schemas)
    return _FINGERPRINT_TEMPLATE.replace("@SCHEMAS@", literal).strip()


# Rows inserted, updated or deleted by the current transaction.
ROWS_WRITTEN_SQL = """
SELECT coalesce(sum(n_tup_ins + n_tup_upd + n_tup_del), 0)::bigint
  FROM pg_stat_xact_user_tables
"""


def tuple_cursor(conn):
    """A cursor whose rows are tuples, whichever driver community.postgresql connected with.

    With psycopg 3 installed it connects with psycopg 3 and makes dict rows the
    connection's default; the chatflow modules read rows by position.
    """
    if tuple_row is not None and type(conn).__module__.split(".")[0] == "psycopg":
        return conn.cursor(row_factory=tuple_row)
    return conn.cursor()


def executed_query(cursor, sql, args):
    """The statement as sent, parameters bound: psycopg2 keeps it in cursor.query, psycopg 3 can mogrify it."""
    query = getattr(cursor, "query", None)
    if query is None:
        query = cursor.mogrify(sql, args)
    if isinstance(query, bytes):
        query = query.decode("utf-8", "replace")
    return query.strip()
