#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: ChatFlow platform team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: host_fingerprint
short_description: Fingerprint the state a provisioning run manages, to skip a rerun when nothing drifted
version_added: "0.3.0"
description:
  - Reads, in one pass, everything the ChatFlow roles manage on the host (files and directories with their
    content, mode and owner; systemd units; packages; the output of read-only commands such as
    C(nft -s list table), catalog queries run as C(postgres) and C(redis-cli CONFIG GET)) and hashes it,
    together with a digest of the run's inputs, into one fingerprint.
  - I(state=compare) is read-only (also in check mode). C(unchanged) is true when the fingerprint equals
    the one recorded by the last complete run, and that record is younger than I(max_age_hours).
    C(differs) names what changed since.
  - I(state=record) writes the fingerprint (0600 root) after a complete run. The record is the play's own
    bookkeeping (like a fact cache), not configuration of the host, so it is never reported as a change;
    C(recorded) tells whether the fingerprint in the record changed.
  - With I(manifests), every item belongs to the role that declared it, and C(differs_by_owner) tells
    whose state drifted, so a rerun can run only those roles (C(targetable)).
options:
  state:
    description: Compare with the record, or record.
    type: str
    choices: [compare, record]
    default: compare
  path:
    description: File of the record.
    type: path
    default: /var/lib/chatflow/fingerprint.json
  inputs:
    description: Digest of the run's inputs (variables and code), computed on the control node.
    type: str
    required: true
  trees:
    description:
      - Files and directories; a directory is walked unless I(recurse) is false. A missing path counts as absent.
    type: list
    elements: dict
    default: []
    suboptions:
      path:
        description: Absolute path.
        type: path
        required: true
      recurse:
        description: Walk a directory (false records only the directory itself).
        type: bool
        default: true
  units:
    description: systemd units whose active and enabled states count.
    type: list
    elements: str
    default: []
  packages:
    description: Debian packages whose installed version and status count.
    type: list
    elements: str
    default: []
  commands:
    description: Read-only commands whose exit code and output count.
    type: list
    elements: dict
    default: []
    suboptions:
      name:
        description: Key of the item in the fingerprint.
        type: str
        required: true
      argv:
        description: The command.
        type: list
        elements: str
        required: true
      stdin:
        description: Text fed to the command (an SQL script, for example).
        type: str
  manifests:
    version_added: "0.4.0"
    description:
      - What each role manages, by role name (the owner of its items). Each value is a dict with the keys
        I(trees), I(units), I(packages), I(commands) (as the options of the same names), I(postgresql)
        (as the option, with I(parts), a list of C(settings) and C(roles), for the cluster-wide state) and
        I(follows), the roles whose state this role's state is derived from (a repair of theirs runs it too).
      - Items of the flat options above belong to no role; a drift there is never targetable.
    type: dict
    default: {}
  complete:
    version_added: "0.4.0"
    description:
      - (record) whether the run ran every role. A targeted run records the state it leaves but keeps the
        time of the last complete run, so I(max_age_hours) still forces a complete run in time.
    type: bool
    default: true
  environment:
    description: Environment of the commands (for example a password for C(redis-cli)). Never logged.
    type: dict
    default: {}
  postgresql:
    description:
      - A local PostgreSQL cluster, read with psql as I(os_user) (peer authentication). Roles, memberships,
        role settings, databases, settings and config lines; in each of I(databases) the catalog of
        I(schemas) (the fingerprint of C(chatflow.db.pg_migrate)), every privilege and the migration history.
    type: dict
    suboptions:
      port:
        description: Port of the cluster.
        type: int
        default: 5432
      databases:
        description: Databases whose catalog counts.
        type: list
        elements: str
        default: []
      schemas:
        description: Schemas whose objects and privileges count.
        type: list
        elements: str
        default: [public]
      os_user:
        description: OS user psql runs as.
        type: str
        default: postgres
  max_age_hours:
    description: A record older than this never counts as unchanged (time-based duties such as renewals).
    type: int
    default: 24
author:
  - ChatFlow platform team
"""

EXAMPLES = r"""
- name: Fingerprint the managed state
  chatflow.db.host_fingerprint:
    inputs: "{{ inputs_digest }}"
    trees:
      - path: /etc/redis
      - path: /home/agenti/my-mvp-slack
        recurse: false
    units: [redis-server]
    packages: [redis-server]
    commands:
      - name: firewall
        argv: [nft, -s, list, table, inet, chatflow]
  register: fingerprint

- name: Record the fingerprint after a complete run
  chatflow.db.host_fingerprint:
    state: record
    inputs: "{{ inputs_digest }}"
    trees: [{path: /etc/redis}]
"""

RETURN = r"""
fingerprint:
  description: sha256 of every item.
  returned: always
  type: str
unchanged:
  description: (compare) the host is as the last complete run left it, and the record is fresh.
  returned: always
  type: bool
reason:
  description: Why the host does not count as unchanged ('' when it does).
  returned: always
  type: str
differs:
  description: Keys of the items that differ from the record (at most 50).
  returned: always
  type: list
  elements: str
items:
  description: Number of items fingerprinted.
  returned: always
  type: int
differs_by_owner:
  description: The differing keys by the role that declared them (C('') for items of no manifest).
  returned: always
  type: dict
targets:
  description: >-
    When C(targetable), the roles to run: those whose items differ and, through I(follows), those that
    follow them; otherwise empty.
  returned: always
  type: list
  elements: str
targetable:
  description: >-
    Only items of manifests differ, against a fresh record of the same inputs: running the roles of
    C(differs_by_owner) repairs the host.
  returned: always
  type: bool
recorded:
  description: (record) the recorded fingerprint changed (in check mode, would change).
  returned: always
  type: bool
age_hours:
  description: Age of the record in hours (-1 when there is none).
  returned: always
  type: float
"""

import hashlib
import json
import os
import stat
import tempfile
import time

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.chatflow.db.plugins.module_utils.pg_catalog import catalog_fingerprint_sql

# Cluster-wide state, in two parts that different roles own: the logins
# (roles with their attributes and password hashes as md5 of the verifier,
# memberships, per-role settings, databases with their ACLs), and the
# server's settings with every config-file line.
CLUSTER_SQL = {
    "roles": """
SELECT 'role', rolname, rolsuper, rolinherit, rolcreaterole, rolcreatedb, rolcanlogin, rolreplication,
       rolbypassrls, rolconnlimit, md5(coalesce(rolpassword, '')), rolvaliduntil FROM pg_authid ORDER BY rolname;
SELECT 'member', roleid::regrole, member::regrole, admin_option FROM pg_auth_members ORDER BY 2, 3;
SELECT 'rolesetting', setdatabase, setrole::regrole, setconfig FROM pg_db_role_setting ORDER BY 2, 3;
SELECT 'database', datname, datdba::regrole, pg_encoding_to_char(encoding), datcollate, datctype,
       datallowconn, datconnlimit, datacl FROM pg_database ORDER BY datname;
""",
    "settings": """
SELECT 'setting', name, setting, pending_restart FROM pg_settings
 WHERE source NOT IN ('session', 'client') ORDER BY name;
SELECT 'file', sourcefile, sourceline, name, setting, applied, error FROM pg_file_settings ORDER BY 2, 3;
""",
}

# In each database: the catalog of the managed schemas (pg_migrate's own
# fingerprint), the privileges on every object, default privileges, and the
# migration history.
DATABASE_SQL = """
SET search_path = pg_catalog;
{catalog};
SELECT 'nsp', nspname, nspowner::regrole, nspacl FROM pg_namespace
 WHERE nspname !~ '^pg_(toast_)?temp_' ORDER BY 2;
SELECT 'relacl', c.oid::regclass, c.relkind, c.relacl FROM pg_class c
  JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = ANY({schemas}) ORDER BY 2;
SELECT 'colacl', a.attrelid::regclass, a.attname, a.attacl FROM pg_attribute a
  JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE n.nspname = ANY({schemas}) AND a.attacl IS NOT NULL ORDER BY 2, 3;
SELECT 'procacl', p.oid::regprocedure, p.proacl FROM pg_proc p
  JOIN pg_namespace n ON n.oid = p.pronamespace WHERE n.nspname = ANY({schemas}) ORDER BY 2;
SELECT 'defacl', defaclrole::regrole, defaclnamespace::regnamespace, defaclobjtype, defaclacl
  FROM pg_default_acl ORDER BY 2, 3, 4;
SELECT to_regclass('chatflow_meta.schema_migrations') IS NOT NULL AS has_history \\gset
\\if :has_history
SELECT 'migration', key, checksum, success FROM chatflow_meta.schema_migrations ORDER BY key;
\\endif
"""


def postgresql_commands(spec):
    """The psql runs that fingerprint a cluster: one per cluster-wide part, one per database."""
    names = spec.get("schemas", ["public"])
    schemas = "ARRAY[%s]::name[]" % ", ".join("'%s'" % s.replace("'", "''") for s in names)
    catalog = catalog_fingerprint_sql(names)
    base = ["runuser", "-u", spec.get("os_user", "postgres"), "--", "psql", "-X", "-A", "-t", "-q"]
    base += ["-v", "ON_ERROR_STOP=1", "-p", str(spec.get("port", 5432))]
    commands = [
        dict(name="postgresql:" + part, argv=[*base, "-d", "postgres", "-f", "-"], stdin=CLUSTER_SQL[part])
        for part in spec.get("parts", ["roles", "settings"])
    ]
    for db in spec.get("databases", []):
        stdin = DATABASE_SQL.format(catalog=catalog, schemas=schemas)
        commands.append(dict(name="postgresql:" + db, argv=[*base, "-d", db, "-f", "-"], stdin=stdin))
    return commands


def _sha(data):
    if not isinstance(data, bytes):
        data = data.encode("utf-8", "surrogateescape")
    return hashlib.sha256(data).hexdigest()


def _file_item(path):
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return "absent"
    head = "%o:%d:%d" % (st.st_mode, st.st_uid, st.st_gid)
    if stat.S_ISLNK(st.st_mode):
        return head + ":link:" + os.readlink(path)
    if stat.S_ISREG(st.st_mode):
        digest = hashlib.sha256()
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
        return head + ":file:" + digest.hexdigest()
    if stat.S_ISDIR(st.st_mode):
        return head + ":dir"
    # Sockets, fifos: their existence and mode only.
    return head + ":other"


def tree_items(path, recurse=True):
    """{'file:<path>': description} for path and, when it is a directory and recurse, all below it."""
    items = {"file:" + path: _file_item(path)}
    if recurse and os.path.isdir(path) and not os.path.islink(path):
        for root, dirs, files in os.walk(path):
            dirs.sort()
            for name in sorted(dirs) + sorted(files):
                full = os.path.join(root, name)
                items["file:" + full] = _file_item(full)
    return items


def unit_items(run, units):
    if not units:
        return {}
    rc, out, _err = run(["systemctl", "show", "--property=Id,ActiveState,UnitFileState", "--", *units])
    items = {}
    for block, unit in zip(out.strip().split("\n\n"), units):
        props = dict(line.split("=", 1) for line in block.splitlines() if "=" in line)
        items["unit:" + unit] = "%s/%s" % (props.get("ActiveState", "?"), props.get("UnitFileState", "?"))
    if rc != 0:
        items["unit:systemctl"] = "rc=%d" % rc
    return items


def package_items(run, packages):
    if not packages:
        return {}
    _rc, out, _err = run(["dpkg-query", "-W", "-f=${Package} ${Version} ${db:Status-Abbrev}\n", "--", *packages])
    found = {}
    for line in out.splitlines():
        parts = line.split(" ", 1)
        if len(parts) == 2:
            found[parts[0]] = parts[1].strip()
    return dict(("package:" + p, found.get(p, "absent")) for p in packages)


def command_items(run, commands, environment):
    items = {}
    for command in commands:
        rc, out, err = run(command["argv"], data=command.get("stdin"), environ_update=environment)
        # The output can hold secrets (ACL hashes, SCRAM verifiers): only its digest is kept.
        items["command:" + command["name"]] = "rc=%d:%s" % (rc, _sha(out + "\0" + (err if rc else "")))
    return items


def fingerprint_of(items):
    return _sha(json.dumps(items, sort_keys=True))


def read_record(path):
    try:
        with open(path) as handle:
            return json.load(handle)
    except (OSError, ValueError):
        return None


def record_age(record, now):
    """Hours since the last complete run the record knows of."""
    return (now - float(record.get("complete_at", record.get("recorded_at", 0)))) / 3600.0


def compare(record, items, fingerprint, max_age_hours, now):
    """(unchanged, reason, differs, age_hours) of the current items against the record."""
    if not record or "items" not in record:
        return False, "no complete run recorded yet", [], -1.0
    old = record["items"]
    differs = sorted(k for k in set(old) | set(items) if old.get(k) != items.get(k))
    age = record_age(record, now)
    if differs:
        names = ", ".join(differs[:10]) + (" and %d more" % (len(differs) - 10) if len(differs) > 10 else "")
        return False, "changed since the last complete run: " + names, differs[:50], age
    if record.get("fingerprint") != fingerprint:
        return False, "the record is inconsistent", [], age
    if age > max_age_hours or age < 0:
        return False, "the last complete run is %.1f h old (max %d h)" % (age, max_age_hours), [], age
    return True, "", [], age


def by_owner(differs, owners):
    """{owner: [keys]} of the differing keys ('' for keys of no manifest)."""
    grouped = {}
    for key in differs:
        grouped.setdefault(owners.get(key, ""), []).append(key)
    return grouped


def followers(owners_differing, manifests):
    """The roles to run: those that drifted and, transitively, those that follow them."""
    targets = set(owners_differing)
    grew = True
    while grew:
        more = {name for name, m in manifests.items() if set(m.get("follows") or []) & targets}
        grew = not more <= targets
        targets |= more
    return sorted(targets)


def targetable(record, items, differs, owners, fresh):
    """A drift that the roles owning it can repair alone: same inputs (so the same manifests), a
    fresh record, every differing item declared by a role."""
    if not record or not differs or not fresh:
        return False
    if record["items"].get("inputs") != items.get("inputs"):
        return False
    return all(owners.get(k) for k in differs)


def write_record(path, record):
    """Write the record (a dict) atomically, 0600."""
    directory = os.path.dirname(path)
    if not os.path.isdir(directory):
        os.makedirs(directory, 0o700)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".fingerprint.")
    try:
        with os.fdopen(fd, "w") as handle:
            json.dump(record, handle, sort_keys=True)
        os.chmod(tmp, 0o600)
        os.rename(tmp, path)
    except Exception:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


TREE_SPEC = dict(path=dict(type="path", required=True), recurse=dict(type="bool", default=True))
COMMAND_SPEC = dict(
    name=dict(type="str", required=True),
    argv=dict(type="list", elements="str", required=True),
    stdin=dict(type="str"),
)
POSTGRESQL_SPEC = dict(
    port=dict(type="int", default=5432),
    databases=dict(type="list", elements="str", default=[]),
    schemas=dict(type="list", elements="str", default=["public"]),
    os_user=dict(type="str", default="postgres"),
)
MANIFEST_KEYS = ("trees", "units", "packages", "commands", "postgresql", "follows")


def argument_spec():
    return dict(
        state=dict(type="str", choices=["compare", "record"], default="compare"),
        path=dict(type="path", default="/var/lib/chatflow/fingerprint.json"),
        inputs=dict(type="str", required=True, no_log=False),
        trees=dict(type="list", elements="dict", default=[], options=TREE_SPEC),
        units=dict(type="list", elements="str", default=[]),
        packages=dict(type="list", elements="str", default=[]),
        commands=dict(type="list", elements="dict", default=[], options=COMMAND_SPEC),
        manifests=dict(type="dict", default={}),
        complete=dict(type="bool", default=True),
        environment=dict(type="dict", default={}, no_log=True),
        postgresql=dict(type="dict", options=POSTGRESQL_SPEC),
        max_age_hours=dict(type="int", default=24),
    )


def normalise(manifest):
    """A manifest with the types the options of the same names would give (the dict is not
    validated by the argument spec: numbers templated into a command line are ints)."""
    out = dict(manifest)
    out["trees"] = [
        dict(path=str(t["path"]), recurse=bool(t.get("recurse", True))) for t in manifest.get("trees") or []
    ]
    out["commands"] = [
        dict(name=str(c["name"]), argv=[str(a) for a in c["argv"]], stdin=c.get("stdin"))
        for c in manifest.get("commands") or []
    ]
    for key in ("units", "packages", "follows"):
        out[key] = [str(v) for v in manifest.get(key) or []]
    return out


def check_arguments(p):
    """The message of the first bad argument of the caller's own, or None."""
    for owner, manifest in p["manifests"].items():
        if not isinstance(manifest, dict) or set(manifest) - set(MANIFEST_KEYS):
            return "manifests.%s must be a dict with the keys %s" % (owner, ", ".join(MANIFEST_KEYS))
        for tree in manifest.get("trees") or []:
            if not isinstance(tree, dict) or "path" not in tree:
                return "manifests.%s.trees: each entry needs a path" % owner
        for command in manifest.get("commands") or []:
            if not isinstance(command, dict) or "name" not in command or not command.get("argv"):
                return "manifests.%s.commands: each entry needs a name and an argv" % owner
    for tree in p["trees"]:
        if not os.path.isabs(tree["path"]):
            return "trees: %s is not an absolute path" % tree["path"]
    if p["max_age_hours"] < 0:
        return "max_age_hours must be 0 or more, got %d" % p["max_age_hours"]
    return None


def unreadable_manifest(p):
    """Why the manifests cannot be fingerprinted as the roles' inputs resolve them (a relative
    path from a bad input, say), or None.  Not a failure of the comparison: the run then runs
    every role, and their preflights name the input."""
    for owner, manifest in sorted(p["manifests"].items()):
        for tree in manifest.get("trees") or []:
            if not os.path.isabs(str(tree["path"])):
                return "manifests.%s.trees: %s is not an absolute path" % (owner, tree["path"])
    return None


def manifest_items(run, manifest, environment):
    """The items of one manifest (or of the flat options)."""
    items = {}
    for tree in manifest.get("trees") or []:
        items.update(tree_items(tree["path"], tree.get("recurse", True)))
    items.update(unit_items(run, manifest.get("units") or []))
    items.update(package_items(run, manifest.get("packages") or []))
    commands = list(manifest.get("commands") or [])
    if manifest.get("postgresql"):
        commands += postgresql_commands(manifest["postgresql"])
    items.update(command_items(run, commands, environment))
    return items


def collect(run, p):
    """(items, owners): every item, and the role that declared each."""
    items = {"inputs": p["inputs"]}
    owners = {}
    for owner, manifest in [("", p), *sorted(p["manifests"].items())]:
        found = manifest_items(run, manifest, p["environment"])
        items.update(found)
        owners.update(dict.fromkeys(found, owner))
    return items, owners


def evaluate(p, record, items, owners, now):
    # A file that is gone is no item now: the record says whose it was.
    owners = dict((record or {}).get("owners", {}), **owners)
    fingerprint = fingerprint_of(items)
    unchanged, reason, differs, age = compare(record, items, fingerprint, p["max_age_hours"], now)
    grouped = by_owner(differs, owners)
    can_target = targetable(record, items, differs, owners, 0 <= age <= p["max_age_hours"])
    return dict(
        changed=False,
        fingerprint=fingerprint,
        unchanged=unchanged,
        reason=reason,
        differs=differs,
        differs_by_owner=grouped,
        targetable=can_target,
        targets=followers(grouped, p["manifests"]) if can_target else [],
        items=len(items),
        age_hours=round(age, 2),
        recorded=False,
    )


def not_comparable(reason):
    """The result of a compare that cannot be made: a complete run follows."""
    return dict(
        changed=False,
        fingerprint="",
        unchanged=False,
        reason=reason,
        differs=[],
        differs_by_owner={},
        targetable=False,
        targets=[],
        items=0,
        age_hours=-1.0,
        recorded=False,
    )


def main():
    module = AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True)
    p = module.params
    problem = check_arguments(p)
    if problem:
        module.fail_json(msg=problem)
    unreadable = unreadable_manifest(p)
    if unreadable and p["state"] == "compare":
        module.exit_json(**not_comparable("the roles' manifests cannot be read: %s" % unreadable))
    if unreadable:
        module.fail_json(msg="cannot record: %s" % unreadable)
    p["manifests"] = dict((owner, normalise(m)) for owner, m in p["manifests"].items())

    def run(argv, data=None, environ_update=None):
        # A command missing on a fresh host is a state like any other, not a failure.
        try:
            return module.run_command(
                argv, data=data, environ_update=environ_update, binary_data=False, handle_exceptions=False
            )
        except OSError as exc:
            return 127, "", "%s: %s" % (argv[0], exc.strerror)

    try:
        items, owners = collect(run, p)
    except OSError as exc:
        module.fail_json(msg="cannot read %s: %s" % (exc.filename, exc.strerror))
    now = time.time()
    record = read_record(p["path"])
    result = evaluate(p, record, items, owners, now)
    if p["state"] == "record":
        result["recorded"] = not record or record.get("fingerprint") != result["fingerprint"]
        complete_at = now if p["complete"] or not record else record.get("complete_at", record.get("recorded_at", now))
        if not module.check_mode:
            try:
                new = dict(
                    fingerprint=result["fingerprint"],
                    items=items,
                    owners=owners,
                    recorded_at=now,
                    complete_at=complete_at,
                )
                write_record(p["path"], new)
            except OSError as exc:
                module.fail_json(msg="cannot write the fingerprint to %s: %s" % (p["path"], exc), **result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
