# -*- coding: utf-8 -*-
# Copyright: ChatFlow platform team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Pure planning helpers of chatflow.db.pg_migrate: no database, no Ansible.

A migration directory holds three kinds of files:

- ``V<version>__<description>.sql``: versioned, applied once, in version order;
- ``U<version>__<description>.sql``: the optional down file of that version,
  run when rolling back below it;
- ``R__<description>.sql``: repeatable, re-applied whenever its checksum
  changes, after the versioned files, in description order.

A file may start with directive comments, before any code::

    -- chatflow:no-transaction

``no-transaction`` runs the file outside a transaction block (for CREATE INDEX
CONCURRENTLY); such a file must hold exactly one statement.  Other files not
ending in ``.sql`` (a README) are ignored; a ``.sql`` file whose name does not
follow the pattern is an error, so a typo never silently skips a migration.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import re

from ansible_collections.chatflow.db.plugins.module_utils.pg_catalog import (
    normalise_sql,
    split_statements,
    sql_checksum,
)

FILE_RE = re.compile(r"^(?P<kind>[VUR])(?P<version>[0-9]*)__(?P<description>[A-Za-z0-9][A-Za-z0-9_]*)\.sql$")
DIRECTIVE_RE = re.compile(r"^--\s*chatflow:\s*(?P<name>[a-z][a-z0-9-]*)\s*$")
KNOWN_DIRECTIVES = frozenset(["no-transaction"])
_CONCURRENTLY_RE = re.compile(
    r"\b(?P<head>(?:CREATE\s+(?:UNIQUE\s+)?INDEX|DROP\s+INDEX|REINDEX\s+(?:\(\s*[^)]*\)\s*)?"
    r"(?:INDEX|TABLE|SCHEMA|DATABASE)))\s+CONCURRENTLY\b",
    re.IGNORECASE,
)


class MigrationError(Exception):
    """A problem with the migration files, found before connecting."""


class Migration(object):
    """One migration file, parsed."""

    __slots__ = ("checksum", "description", "directives", "filename", "kind", "statements", "text", "version")

    def __init__(self, kind, version, description, filename, text):
        self.kind = kind
        self.version = version
        self.description = description
        self.filename = filename
        self.text = normalise_sql(text)
        self.checksum = sql_checksum([text])
        self.directives = parse_directives(self.text, filename)
        self.statements = split_statements(self.text)

    @property
    def key(self):
        """Key of the tracking row: the version, or R:<description> for a repeatable."""
        return str(self.version) if self.kind == "V" else "R:" + self.description

    @property
    def transactional(self):
        return "no-transaction" not in self.directives

    def as_dict(self):
        return dict(
            kind={"V": "versioned", "U": "down", "R": "repeatable", "S": "seed"}[self.kind],
            version=self.version,
            description=self.description.replace("_", " "),
            script=self.filename,
            checksum=self.checksum,
            transactional=self.transactional,
        )


def parse_filename(filename):
    """(kind, version or None, description) of a migration file name, or None if not a .sql file.

    Raises MigrationError for a .sql file that does not follow the pattern.
    """
    if not filename.endswith(".sql"):
        return None
    match = FILE_RE.match(filename)
    if not match:
        raise MigrationError(
            "%s: not a migration file name; use V<version>__<description>.sql, "
            "U<version>__<description>.sql or R__<description>.sql "
            "(description: letters, digits, underscores)" % filename
        )
    kind, version = match.group("kind"), match.group("version")
    if kind in "VU" and not version:
        raise MigrationError("%s: a %s file needs a version number after %s" % (filename, kind, kind))
    if kind == "R" and version:
        raise MigrationError("%s: a repeatable file has no version (R__<description>.sql)" % filename)
    return kind, (int(version) if version else None), match.group("description")


def parse_directives(text, filename):
    """The set of directives in the leading comment block of a file."""
    directives = set()
    for line in text.split("\n"):
        stripped = line.strip()
        if not stripped:
            continue
        if not stripped.startswith("--"):
            break
        match = DIRECTIVE_RE.match(stripped)
        if match:
            name = match.group("name")
            if name not in KNOWN_DIRECTIVES:
                raise MigrationError(
                    "%s: unknown directive 'chatflow:%s'; known: %s"
                    % (filename, name, ", ".join(sorted(KNOWN_DIRECTIVES)))
                )
            directives.add(name)
        elif stripped.lower().startswith("-- chatflow:") or stripped.lower().startswith("--chatflow:"):
            raise MigrationError("%s: malformed directive %r" % (filename, stripped))
    return directives


_CREATE_INDEX_RE = re.compile(
    r"^\s*CREATE\s+(?:UNIQUE\s+)?INDEX\s+(?:CONCURRENTLY\s+)?(?:IF\s+NOT\s+EXISTS\s+)?"
    r"(?P<name>\"(?:[^\"]|\"\")+\"|[A-Za-z_][A-Za-z0-9_$]*)\s+ON\b",
    re.IGNORECASE,
)


def created_index_name(statement):
    """The exact name of the index a CREATE INDEX statement creates (as the catalog
    has it: unquoted names folded to lower case), or None for any other statement."""
    code = "\n".join(line for line in statement.splitlines() if not line.strip().startswith("--"))
    match = _CREATE_INDEX_RE.match(code)
    if not match:
        return None
    name = match.group("name")
    return name[1:-1].replace('""', '"') if name.startswith('"') else name.lower()


def strip_concurrently(statement):
    """The statement without CONCURRENTLY, so it can run inside a transaction block."""
    return _CONCURRENTLY_RE.sub(lambda m: m.group("head"), statement)


def _check_statements(migration):
    """Refuse a file without SQL, and a no-transaction file that could be left half-applied."""
    filename = migration.filename
    if not migration.statements:
        raise MigrationError("%s: the file holds no SQL statement" % filename)
    if migration.transactional:
        return
    if migration.kind == "R":
        raise MigrationError("%s: a repeatable file cannot be no-transaction" % filename)
    if len(migration.statements) != 1:
        raise MigrationError(
            "%s: a no-transaction file must hold exactly one statement (it has %d), "
            "so that a failure cannot leave it half-applied" % (filename, len(migration.statements))
        )


def _duplicate_message(migration, other):
    if migration.kind == "V":
        return "%s: version %d is also used by %s" % (migration.filename, migration.version, other.filename)
    if migration.kind == "U":
        return "%s: version %d has two down files" % (migration.filename, migration.version)
    return "%s: repeatable %s is defined twice" % (migration.filename, migration.description)


def load_migrations(files):
    """Parse {filename: text} into (versioned, downs, repeatables).

    versioned: list ordered by version; downs: {version: Migration};
    repeatables: list ordered by description.  Raises MigrationError naming
    the file for every problem that can be seen without a database.
    """
    versioned, downs, repeatables = {}, {}, {}
    by_kind = {"V": versioned, "U": downs, "R": repeatables}
    for filename in sorted(files):
        parsed = parse_filename(filename)
        if parsed is None:
            continue
        kind, version, description = parsed
        migration = Migration(kind, version, description, filename, files[filename])
        _check_statements(migration)
        key = description if kind == "R" else version
        if key in by_kind[kind]:
            raise MigrationError(_duplicate_message(migration, by_kind[kind][key]))
        by_kind[kind][key] = migration
    for version, down in downs.items():
        if version not in versioned:
            raise MigrationError("%s: there is no V%s file for this down file" % (down.filename, version))
    return (
        [versioned[v] for v in sorted(versioned)],
        downs,
        [repeatables[d] for d in sorted(repeatables)],
    )


def load_seeds(files):
    """Parse {filename: text} into the seed files, in name order.

    A seed file is any ``.sql`` name (without a directory); it runs in a
    transaction, so a no-transaction directive is refused.
    """
    seeds = []
    for filename in sorted(files):
        if "/" in filename or not filename.endswith(".sql"):
            raise MigrationError("seed: %r is not a file name ending in .sql (keys are file names)" % filename)
        seed = Migration("S", None, filename[: -len(".sql")], filename, files[filename])
        if not seed.transactional:
            raise MigrationError("seed: %s: seed files run in one transaction (no chatflow:no-transaction)" % filename)
        if not seed.statements:
            raise MigrationError("seed: %s holds no statement" % filename)
        seeds.append(seed)
    return seeds


def parse_target(value, versions):
    """The target version as an int: 'latest' (or empty) means the highest version, 0 means none."""
    if value is None or str(value).strip().lower() in ("", "latest"):
        return max(versions) if versions else 0
    text = str(value).strip()
    if not text.isdigit():
        raise MigrationError("target: %r is not a version number, 0 or 'latest'" % value)
    target = int(text)
    if target and target not in versions:
        raise MigrationError(
            "target: there is no migration with version %d (known: %s)"
            % (target, ", ".join(str(v) for v in sorted(versions)) or "none")
        )
    return target


def plan_migrate(versioned, repeatables, applied, target, *, repair_checksums=False, out_of_order=False):
    """Decide what a migrate run does, from the files and the tracking rows.

    applied: {key: {"checksum": str, "success": bool, "script": str}}.
    Returns a dict with pending (versioned to run), repeatables (to re-run),
    checksum_repairs ([(key, script, old, new)]), beyond_target (versions
    applied above the target) and missing (applied keys with no file).
    Raises MigrationError for a changed applied file (unless
    repair_checksums), an applied version whose file is gone, or a pending
    version below the highest applied one (unless out_of_order).
    """
    by_key = dict((m.key, m) for m in versioned)
    problems = []
    checksum_repairs = []
    for key, row in sorted(applied.items()):
        if key.startswith("R:"):
            continue
        migration = by_key.get(key)
        if migration is None:
            problems.append(
                "version %s (%s) is applied but its file is gone; restore the file, or roll back "
                "before removing it" % (key, row.get("script"))
            )
            continue
        if row.get("success") and row.get("checksum") != migration.checksum:
            if repair_checksums:
                checksum_repairs.append((key, migration.filename, row.get("checksum"), migration.checksum))
            else:
                problems.append(
                    "%s was applied with checksum %s but the file now has %s; an applied migration must "
                    "not change: restore it and add a new migration (or, for a cosmetic edit, rerun with "
                    "repair_checksums)" % (migration.filename, row.get("checksum"), migration.checksum)
                )
    if problems:
        raise MigrationError("; ".join(problems))

    applied_ok = set(k for k, r in applied.items() if r.get("success") and not k.startswith("R:"))
    highest = max([int(k) for k in applied_ok] or [0])
    pending = [m for m in versioned if m.key not in applied_ok and m.version <= target]
    if not out_of_order:
        late = [m for m in pending if m.version < highest]
        if late:
            raise MigrationError(
                "%s: version lower than the highest applied (%d); renumber it above %d, or allow "
                "out_of_order" % (", ".join(m.filename for m in late), highest, highest)
            )
    rerun = [m for m in repeatables if applied.get(m.key, {}).get("checksum") != m.checksum]
    beyond = sorted(int(k) for k in applied_ok if int(k) > target)
    return dict(pending=pending, repeatables=rerun, checksum_repairs=checksum_repairs, beyond_target=beyond)


def plan_rollback(versioned, downs, applied, target):
    """The versions to roll back (highest first) to reach target, each with its down file.

    Raises MigrationError before anything runs if one of them has no down file.
    """
    by_version = dict((m.version, m) for m in versioned)
    to_undo = sorted((int(k) for k, r in applied.items() if not k.startswith("R:") and int(k) > target), reverse=True)
    missing = [v for v in to_undo if v not in downs]
    if missing:
        raise MigrationError(
            "cannot roll back to %d: no down file for %s"
            % (
                target,
                ", ".join(
                    "V%s (%s)" % (v, by_version[v].filename if v in by_version else "file gone") for v in missing
                ),
            )
        )
    return [(by_version.get(v), downs[v]) for v in to_undo]
