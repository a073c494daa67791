"""The pure parts of chatflow.db.pg_migrate: file names, directives, ordering, planning, the drift diff."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from ansible_collections.chatflow.db.plugins.module_utils.pg_drift import (
    ALL_KINDS,
    STRUCTURE_KINDS,
    column_definition,
    diff_snapshots,
    rename_schema,
)
from ansible_collections.chatflow.db.plugins.module_utils.pg_migrate_plan import (
    MigrationError,
    created_index_name,
    load_migrations,
    parse_directives,
    parse_filename,
    parse_target,
    plan_migrate,
    plan_rollback,
    strip_concurrently,
)

ROOT = Path(__file__).resolve().parents[2]
MIGRATIONS = ROOT / "roles/chatflow_database/files/migrations"


def files(**texts: str) -> dict[str, str]:
    return {name.replace("_sql", ".sql"): text for name, text in texts.items()}


# -- file names ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("V001__core_schema.sql", ("V", 1, "core_schema")),
        ("V10__later.sql", ("V", 10, "later")),
        ("U002__messages_index.sql", ("U", 2, "messages_index")),
        ("R__01_functions.sql", ("R", None, "01_functions")),
        ("README.md", None),
    ],
)
def test_file_names_are_parsed(name, expected):
    assert parse_filename(name) == expected


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("v001__lower.sql", "not a migration file name"),
        ("V001_one_underscore.sql", "not a migration file name"),
        ("V__no_version.sql", "needs a version number"),
        ("R1__versioned_repeatable.sql", "has no version"),
        ("V001__.sql", "not a migration file name"),
    ],
)
def test_bad_file_names_are_refused(name, message):
    with pytest.raises(MigrationError, match=message):
        parse_filename(name)


def test_versions_are_ordered_numerically_and_repeatables_by_name():
    versioned, downs, repeatables = load_migrations(
        files(
            V10__ten_sql="SELECT 10;",
            V2__two_sql="SELECT 2;",
            V1__one_sql="SELECT 1;",
            U2__two_sql="SELECT -2;",
            R__b_sql="SELECT 'b';",
            R__a_sql="SELECT 'a';",
        )
    )
    assert [m.version for m in versioned] == [1, 2, 10]
    assert list(downs) == [2]
    assert [m.filename for m in repeatables] == ["R__a.sql", "R__b.sql"]
    assert [m.key for m in versioned + repeatables] == ["1", "2", "10", "R:a", "R:b"]


@pytest.mark.parametrize(
    ("texts", "message"),
    [
        ({"V1__a.sql": "SELECT 1;", "V001__b.sql": "SELECT 1;"}, "version 1 is also used by"),
        ({"U3__orphan.sql": "SELECT 1;"}, "there is no V3 file"),
        ({"V1__empty.sql": "-- nothing but a comment\n"}, "holds no SQL statement"),
        ({"V1__two.sql": "-- chatflow:no-transaction\nSELECT 1;\nSELECT 2;\n"}, "exactly one statement"),
        ({"R__nt.sql": "-- chatflow:no-transaction\nSELECT 1;\n"}, "repeatable file cannot be no-transaction"),
        ({"V1__typo.sql": "-- chatflow:no-transactions\nSELECT 1;\n"}, "unknown directive"),
    ],
)
def test_problems_in_the_files_are_refused_with_the_file_name(texts, message):
    with pytest.raises(MigrationError, match=message):
        load_migrations(texts)


# -- directives, checksums, CONCURRENTLY -----------------------------------------------------


def test_directives_are_read_only_from_the_leading_comments():
    assert parse_directives("-- chatflow:no-transaction\n-- why\nCREATE INDEX CONCURRENTLY i ON t (c);\n", "f") == {
        "no-transaction"
    }
    assert parse_directives("SELECT 1;\n-- chatflow:no-transaction\n", "f") == set()
    assert parse_directives("\n--chatflow: no-transaction\nSELECT 1;", "f") == {"no-transaction"}


def test_checksums_ignore_line_endings_only():
    (lf,) = load_migrations({"V1__a.sql": "SELECT 1;\nSELECT 2;\n"})[0]
    (crlf,) = load_migrations({"V1__a.sql": "SELECT 1;\r\nSELECT 2;\r\n"})[0]
    (edited,) = load_migrations({"V1__a.sql": "SELECT 1;\nSELECT 3;\n"})[0]
    assert lf.checksum == crlf.checksum != edited.checksum
    assert re.fullmatch(r"[0-9a-f]{64}", lf.checksum)


@pytest.mark.parametrize(
    ("statement", "expected"),
    [
        ("CREATE INDEX CONCURRENTLY IF NOT EXISTS i ON t (c)", "CREATE INDEX IF NOT EXISTS i ON t (c)"),
        ("create unique index concurrently i on t (c)", "create unique index i on t (c)"),
        ("DROP INDEX CONCURRENTLY IF EXISTS i", "DROP INDEX IF EXISTS i"),
        ("REINDEX INDEX CONCURRENTLY i", "REINDEX INDEX i"),
        ("SELECT 'CONCURRENTLY'", "SELECT 'CONCURRENTLY'"),
    ],
)
def test_concurrently_is_stripped_for_transactional_runs(statement, expected):
    assert strip_concurrently(statement) == expected


# -- targets and plans --------------------------------------------------------------------------


def _set(*names_and_texts):
    return load_migrations(dict(names_and_texts))


def test_target_parsing():
    assert parse_target("latest", [1, 2, 3]) == 3
    assert parse_target(None, []) == 0
    assert parse_target("0", [1, 2]) == 0
    assert parse_target("2", [1, 2]) == 2
    with pytest.raises(MigrationError, match="no migration with version 5"):
        parse_target("5", [1, 2])
    with pytest.raises(MigrationError, match="not a version number"):
        parse_target("two", [1, 2])


def test_plan_runs_pending_versions_and_changed_repeatables():
    versioned, _downs, repeatables = _set(
        ("V1__a.sql", "SELECT 1;"), ("V2__b.sql", "SELECT 2;"), ("R__r.sql", "SELECT 'r';"), ("R__s.sql", "SELECT 's';")
    )
    applied = {
        "1": {"checksum": versioned[0].checksum, "success": True},
        "R:r": {"checksum": repeatables[0].checksum, "success": True},
        "R:s": {"checksum": "old", "success": True},
    }
    plan = plan_migrate(versioned, repeatables, applied, target=2)
    assert [m.filename for m in plan["pending"]] == ["V2__b.sql"]
    assert [m.filename for m in plan["repeatables"]] == ["R__s.sql"]
    assert plan_migrate(versioned, repeatables, applied, target=1)["pending"] == []


def test_a_failed_no_transaction_row_is_pending_again():
    versioned, _downs, repeatables = _set(("V1__a.sql", "SELECT 1;"))
    plan = plan_migrate(versioned, repeatables, {"1": {"checksum": versioned[0].checksum, "success": False}}, 1)
    assert [m.version for m in plan["pending"]] == [1]


def test_plan_refuses_a_changed_applied_file_unless_repair():
    versioned, _downs, repeatables = _set(("V1__a.sql", "SELECT 1;"))
    applied = {"1": {"checksum": "0" * 64, "success": True}}
    with pytest.raises(MigrationError, match=r"V1__a\.sql was applied with checksum 0{64} but the file now has"):
        plan_migrate(versioned, repeatables, applied, 1)
    plan = plan_migrate(versioned, repeatables, applied, 1, repair_checksums=True)
    assert plan["checksum_repairs"] == [("1", "V1__a.sql", "0" * 64, versioned[0].checksum)]


def test_plan_refuses_a_missing_applied_file_and_out_of_order_versions():
    versioned, _downs, repeatables = _set(("V1__a.sql", "SELECT 1;"), ("V3__c.sql", "SELECT 3;"))
    with pytest.raises(MigrationError, match=r"version 2 .* is applied but its file is gone"):
        plan_migrate(versioned, repeatables, {"2": {"checksum": "x", "success": True, "script": "V2__b.sql"}}, 3)
    applied = {"3": {"checksum": versioned[1].checksum, "success": True}}
    with pytest.raises(MigrationError, match=r"V1__a\.sql: version lower than the highest applied"):
        plan_migrate(versioned, repeatables, applied, 3)
    assert [m.version for m in plan_migrate(versioned, repeatables, applied, 3, out_of_order=True)["pending"]] == [1]


def test_rollback_plan_goes_down_highest_first_and_needs_every_down_file():
    versioned, downs, _r = _set(
        ("V1__a.sql", "SELECT 1;"),
        ("V2__b.sql", "SELECT 2;"),
        ("V3__c.sql", "SELECT 3;"),
        ("U2__b.sql", "SELECT -2;"),
        ("U3__c.sql", "SELECT -3;"),
    )
    applied = {k: {"success": True} for k in ("1", "2", "3", "R:x")}
    assert [down.filename for _up, down in plan_rollback(versioned, downs, applied, 1)] == ["U3__c.sql", "U2__b.sql"]
    assert plan_rollback(versioned, downs, applied, 3) == []
    with pytest.raises(MigrationError, match=r"cannot roll back to 0: no down file for V1 \(V1__a.sql\)"):
        plan_rollback(versioned, downs, applied, 0)


# -- the project's own migrations ---------------------------------------------------------------


def test_the_project_migrations_load_and_follow_the_rules():
    texts = {p.name: p.read_text() for p in MIGRATIONS.glob("*.sql")}
    versioned, downs, repeatables = load_migrations(texts)
    assert [m.version for m in versioned] == list(range(1, len(versioned) + 1))
    assert set(downs) == {m.version for m in versioned}, "every version can be rolled back"
    for migration in versioned + list(downs.values()) + repeatables:
        for statement, _offset in migration.statements:
            code = re.sub(r"--[^\n]*", "", statement)
            if re.match(r"\s*CREATE\s+EXTENSION", code, re.I):
                assert "WITH SCHEMA public" in code, f"{migration.filename}: extensions go WITH SCHEMA public"
                continue
            # Our own objects are never schema-qualified (the drift check rebuilds them in a shadow
            # schema); only pg_trgm's operator class and a SECURITY DEFINER body may name public.
            body = re.sub(r"\$\$.*?\$\$", "", code, flags=re.S)
            body = body.replace("public.gin_trgm_ops", "").replace("search_path = pg_catalog, public", "")
            assert "public." not in body, f"{migration.filename}: {statement.strip()[:60]}"


# -- the drift diff, on hand-made snapshots ------------------------------------------------------


def empty():
    return {kind: {} for kind in ALL_KINDS}


def snapshot_with_users():
    snap = empty()
    snap["table"]["users"] = {"owner": "chatflow_owner", "rls": False, "force_rls": False}
    snap["column"]["users.id"] = dict(
        table="users",
        column="id",
        type="uuid",
        notnull=True,
        default="gen_random_uuid()",
        generated="",
        identity="",
        position=1,
    )
    snap["column"]["users.email"] = dict(
        table="users",
        column="email",
        type="character varying(255)",
        notnull=True,
        default=None,
        generated="",
        identity="",
        position=2,
    )
    snap["constraint"]["users.users_pkey"] = dict(
        table="users",
        name="users_pkey",
        type="p",
        definition="PRIMARY KEY (id)",
        validated=True,
        index="CREATE UNIQUE INDEX users_pkey ON public.users USING btree (id)",
    )
    snap["index"]["idx_users_email"] = dict(
        table="users",
        on_view=False,
        valid=True,
        definition="CREATE UNIQUE INDEX idx_users_email ON public.users USING btree (lower((email)::text))",
    )
    return snap


def statements(repairs):
    return [s for r in repairs for s in r.statements]


def test_identical_snapshots_need_no_repair():
    repairs, unmanaged = diff_snapshots(snapshot_with_users(), snapshot_with_users(), "public")
    assert repairs == [] and unmanaged == []


def test_a_missing_table_is_created_from_the_shadow_then_its_constraints_and_indexes():
    repairs, _ = diff_snapshots(snapshot_with_users(), empty(), "public")
    assert statements(repairs) == [
        'CREATE TABLE "public"."users" (LIKE "chatflow_migrate_shadow"."users" INCLUDING DEFAULTS INCLUDING '
        "GENERATED INCLUDING IDENTITY INCLUDING STORAGE INCLUDING COMMENTS INCLUDING COMPRESSION)",
        'ALTER TABLE "public"."users" ADD CONSTRAINT "users_pkey" PRIMARY KEY (id)',
        "CREATE UNIQUE INDEX idx_users_email ON public.users USING btree (lower((email)::text))",
    ]


def test_column_drift_becomes_alter_column_statements():
    live = snapshot_with_users()
    live["column"]["users.email"].update(type="character varying(100)", notnull=False, default="'x'::character varying")
    del live["column"]["users.id"]
    repairs, _ = diff_snapshots(snapshot_with_users(), live, "public")
    assert statements(repairs) == [
        'ALTER TABLE "public"."users" ADD COLUMN "id" uuid DEFAULT gen_random_uuid() NOT NULL',
        'ALTER TABLE "public"."users" ALTER COLUMN "email" TYPE character varying(255) USING "email"::character '
        "varying(255)",
        'ALTER TABLE "public"."users" ALTER COLUMN "email" DROP DEFAULT',
        'ALTER TABLE "public"."users" ALTER COLUMN "email" SET NOT NULL',
    ]


def test_a_changed_index_is_dropped_and_created_and_an_invalid_one_reindexed_concurrently():
    live = snapshot_with_users()
    live["index"]["idx_users_email"]["definition"] = "CREATE INDEX idx_users_email ON public.users USING btree (email)"
    repairs = diff_snapshots(snapshot_with_users(), live, "public")[0]
    assert statements(repairs) == [
        'DROP INDEX CONCURRENTLY "public"."idx_users_email"',
        "CREATE UNIQUE INDEX CONCURRENTLY idx_users_email ON public.users USING btree (lower((email)::text))",
    ]
    assert all(r.concurrent for r in repairs)  # outside the transaction: writers are never blocked
    live = snapshot_with_users()
    live["index"]["idx_users_email"]["valid"] = False
    assert statements(diff_snapshots(snapshot_with_users(), live, "public")[0]) == [
        'REINDEX INDEX CONCURRENTLY "public"."idx_users_email"'
    ]
    live = snapshot_with_users()
    del live["index"]["idx_users_email"]
    (missing,) = diff_snapshots(snapshot_with_users(), live, "public")[0]
    assert missing.concurrent and missing.statements[0].startswith("CREATE UNIQUE INDEX CONCURRENTLY idx_users_email ")


def test_a_missing_key_of_a_table_that_stays_gets_its_index_built_concurrently_then_attached():
    live = snapshot_with_users()
    del live["constraint"]["users.users_pkey"]
    (repair,) = diff_snapshots(snapshot_with_users(), live, "public")[0]
    assert repair.concurrent and repair.statements == [
        'DROP INDEX CONCURRENTLY IF EXISTS "public"."users_pkey_repair"',
        'CREATE UNIQUE INDEX CONCURRENTLY "users_pkey_repair" ON public.users USING btree (id)',
        'ALTER TABLE "public"."users" ADD CONSTRAINT "users_pkey" PRIMARY KEY USING INDEX "users_pkey_repair"',
    ]
    live["constraint"]["users.users_pkey"] = dict(snapshot_with_users()["constraint"]["users.users_pkey"])
    live["constraint"]["users.users_pkey"]["definition"] = "PRIMARY KEY (email)"
    (changed,) = diff_snapshots(snapshot_with_users(), live, "public")[0]
    assert changed.statements[-1] == (
        'ALTER TABLE "public"."users" DROP CONSTRAINT "users_pkey", ADD CONSTRAINT "users_pkey" PRIMARY KEY '
        'USING INDEX "users_pkey_repair"'
    )


def test_a_missing_check_or_foreign_key_is_added_not_valid_then_validated_after_the_transaction():
    desired = snapshot_with_users()
    desired["constraint"]["users.users_email_check"] = dict(
        table="users",
        name="users_email_check",
        type="c",
        definition="CHECK (length(email) > 0)",
        validated=True,
        index=None,
    )
    (repair,) = diff_snapshots(desired, snapshot_with_users(), "public")[0]
    assert repair.concurrent and repair.statements == [
        'ALTER TABLE "public"."users" ADD CONSTRAINT "users_email_check" CHECK (length(email) > 0) NOT VALID',
        'ALTER TABLE "public"."users" VALIDATE CONSTRAINT "users_email_check"',
    ]
    live = snapshot_with_users()
    live["constraint"]["users.users_email_check"] = dict(desired["constraint"]["users.users_email_check"])
    live["constraint"]["users.users_email_check"]["validated"] = False
    (validate,) = diff_snapshots(desired, live, "public")[0]
    assert validate.concurrent and validate.statements == [repair.statements[1]]


def test_a_drifted_column_type_is_deferred_unless_rewrites_are_allowed():
    live = snapshot_with_users()
    live["column"]["users.email"]["type"] = "text"
    (routine,) = diff_snapshots(snapshot_with_users(), live, "public", rewrite=False)[0]
    assert routine.deferred and "exclusive lock" in routine.problem
    assert routine.statements == [
        'ALTER TABLE "public"."users" ALTER COLUMN "email" TYPE character varying(255) USING "email"::character '
        "varying(255)"
    ]
    (asked,) = diff_snapshots(snapshot_with_users(), live, "public", rewrite=True)[0]
    assert not asked.deferred and asked.statements == routine.statements


def test_owner_repairs_come_first_and_unknown_objects_are_only_reported():
    live = snapshot_with_users()
    live["table"]["users"]["owner"] = "intruder"
    live["index"]["hotfix"] = dict(table="users", on_view=False, valid=True, definition="CREATE INDEX hotfix ...")
    live["column"]["users.extra"] = dict(
        table="users", column="extra", type="text", notnull=False, default=None, generated="", identity="", position=3
    )
    del live["index"]["idx_users_email"]
    repairs, unmanaged = diff_snapshots(snapshot_with_users(), live, "public")
    assert repairs[0].phase == "owner" and repairs[0].statements == [
        'ALTER TABLE "public"."users" OWNER TO "chatflow_owner"'
    ]
    assert unmanaged == ["column users.extra", "index hotfix"]
    assert not any("DROP" in s for s in statements(repairs))


def test_a_structure_only_diff_leaves_functions_triggers_views_and_privileges():
    desired = snapshot_with_users()
    desired["function"]["public.f()"] = dict(
        definition="CREATE OR REPLACE FUNCTION public.f() ...", owner="o", prokind="FUNCTION"
    )
    repairs, _ = diff_snapshots(desired, snapshot_with_users(), "public", kinds=STRUCTURE_KINDS)
    assert repairs == []
    repairs, _ = diff_snapshots(desired, snapshot_with_users(), "public")
    assert [r.kind for r in repairs] == ["function", "acl"]
    assert repairs[1].statements == ["REVOKE EXECUTE ON FUNCTION public.f() FROM PUBLIC"]


def test_public_privileges_are_revoked_and_migration_grants_restored():
    desired = snapshot_with_users()
    desired["acl"]["TABLE public.users reporter SELECT"] = dict(
        objtype="TABLE",
        object="public.users",
        grantee="reporter",
        privilege="SELECT",
        grantable=False,
        relation="users",
    )
    live = snapshot_with_users()
    for privilege in ("SELECT", "DELETE"):
        live["acl"][f"TABLE public.users PUBLIC {privilege}"] = dict(
            objtype="TABLE",
            object="public.users",
            grantee="PUBLIC",
            privilege=privilege,
            grantable=False,
            relation="users",
        )
    live["acl"]["TABLE public.users app INSERT"] = dict(
        objtype="TABLE", object="public.users", grantee="app", privilege="INSERT", grantable=False, relation="users"
    )
    assert statements(diff_snapshots(desired, live, "public")[0]) == [
        'GRANT SELECT ON TABLE public.users TO "reporter"',
        "REVOKE DELETE, SELECT ON TABLE public.users FROM PUBLIC",
    ]


def test_views_over_a_retyped_column_are_rebuilt_and_unknown_ones_refused():
    desired, live = snapshot_with_users(), snapshot_with_users()
    live["column"]["users.email"]["type"] = "text"
    view = dict(kind="m", definition=" SELECT users.email FROM public.users;", owner="chatflow_owner")
    desired["view"]["emails"] = dict(view)
    live["view"]["emails"] = dict(view)
    repairs, _ = diff_snapshots(desired, live, "public", dependent_views=lambda tables: ["emails"])
    assert [(r.phase, r.statements[0].split(" (")[0]) for r in repairs] == [
        ("drop_view", 'DROP MATERIALIZED VIEW "public"."emails"'),
        (
            "column",
            'ALTER TABLE "public"."users" ALTER COLUMN "email" TYPE character varying(255) USING "email"::character '
            "varying(255)",
        ),
        ("view", 'CREATE MATERIALIZED VIEW "public"."emails" AS SELECT users.email FROM public.users WITH DATA'),
    ]
    del desired["view"]["emails"]
    repairs, _ = diff_snapshots(desired, live, "public", dependent_views=lambda tables: ["emails"])
    assert [r.statements for r in repairs if r.phase == "drop_view"] == [[]], "an unknown view is never dropped"


def test_check_constraints_accept_their_round_tripped_form():
    desired, live = snapshot_with_users(), snapshot_with_users()
    desired["constraint"]["users.c"] = dict(
        table="users",
        name="c",
        type="c",
        definition="CHECK (a = ANY ((ARRAY['x'])::text[]))",
        validated=True,
        alternatives=["CHECK (a = ANY (ARRAY['x'::text]))"],
    )
    live["constraint"]["users.c"] = dict(
        desired["constraint"]["users.c"], definition="CHECK (a = ANY (ARRAY['x'::text]))"
    )
    assert diff_snapshots(desired, live, "public")[0] == []


def test_schema_renaming_touches_only_qualified_names():
    text = (
        'CREATE INDEX i ON chatflow_migrate_shadow.t USING gin (c public.gin_trgm_ops) -- "chatflow_migrate_shadow".x'
    )
    assert rename_schema(text, "chatflow_migrate_shadow", "public") == (
        "CREATE INDEX i ON public.t USING gin (c public.gin_trgm_ops) -- public.x"
    )
    assert (
        rename_schema("my_chatflow_migrate_shadow.t", "chatflow_migrate_shadow", "public")
        == "my_chatflow_migrate_shadow.t"
    )


def test_generated_columns_are_added_with_their_expression():
    col = dict(
        column="is_edited", type="boolean", notnull=False, default="(edited_at IS NOT NULL)", generated="s", identity=""
    )
    assert column_definition(col) == '"is_edited" boolean GENERATED ALWAYS AS ((edited_at IS NOT NULL)) STORED'


@pytest.mark.parametrize(
    ("statement", "name"),
    [
        (
            "CREATE INDEX CONCURRENTLY IF NOT EXISTS idx_messages_trgm ON messages USING gin (content)",
            "idx_messages_trgm",
        ),
        ("-- a comment\ncreate unique index concurrently Idx_Users_Email on users (lower(email))", "idx_users_email"),
        ('CREATE INDEX "Odd ""Name""" ON t (a)', 'Odd "Name"'),
        ("CREATE INDEX idx_a ON t (a)", "idx_a"),
        # Not an index this statement creates: never a substring match.
        ("DROP INDEX CONCURRENTLY IF EXISTS idx_messages_trgm", None),
        ("CREATE TABLE idx_messages_trgm_log (id int)", None),
    ],
)
def test_created_index_name_is_exact(statement, name):
    assert created_index_name(statement) == name
