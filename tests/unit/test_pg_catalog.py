"""Pure helpers of chatflow.db: checksums, positions, names."""

import re
from pathlib import Path

import pytest
from ansible_collections.chatflow.db.plugins.module_utils import pg_catalog as pc


def test_checksum_ignores_line_ending_style():
    unix = "CREATE TABLE a (id int);\nSELECT 1;\n"
    assert pc.sql_checksum([unix]) == pc.sql_checksum([unix.replace("\n", "\r\n")])
    assert pc.sql_checksum([unix]) == pc.sql_checksum([unix.replace("\n", "\r")])


def test_checksum_changes_with_content_and_with_file_boundaries():
    assert pc.sql_checksum(["SELECT 1;"]) != pc.sql_checksum(["SELECT 2;"])
    assert pc.sql_checksum(["SELECT 1;", "SELECT 2;"]) != pc.sql_checksum(["SELECT 1;SELECT 2;"])


def test_checksum_is_sha256_hex():
    value = pc.sql_checksum(["x"])
    assert len(value) == 64
    int(value, 16)


@pytest.mark.parametrize(
    "name,ok",
    [
        ("chatflow.seed_password_alice", True),
        ("a.b", True),
        ("nodot", False),
        ("a.b.c", False),
        ("a.b;drop", False),
        ("", False),
        ("1a.b", False),
    ],
)
def test_setting_names(name, ok):
    assert pc.valid_setting_name(name) is ok


@pytest.mark.parametrize(
    "name,ok",
    [("chatflow_owner", True), ("_x", True), ("Robert'); DROP", False), ("9lives", False), ("a" * 64, False)],
)
def test_identifiers(name, ok):
    assert pc.valid_identifier(name) is ok


def test_line_of_position_counts_from_one():
    text = "SELECT 1;\nSELECT oops;\nSELECT 3;"
    assert pc.line_of_position(text, 1) == 1
    assert pc.line_of_position(text, text.index("oops") + 1) == 2
    assert pc.line_of_position(text, None) is None
    assert pc.line_of_position(text, 0) is None


def test_catalog_fingerprint_query_names_the_schemas_and_has_no_placeholder():
    sql = pc.catalog_fingerprint_sql(["public", "chatflow_meta"])
    assert "ARRAY['public', 'chatflow_meta']::name[]" in sql and "@SCHEMAS@" not in sql
    assert "%(" not in sql and "%%" not in sql


@pytest.mark.parametrize("name", ["x'; DROP TABLE users; --", "", "9lives"])
def test_catalog_fingerprint_query_refuses_what_is_not_a_schema_name(name):
    with pytest.raises(ValueError, match="not a schema name"):
        pc.catalog_fingerprint_sql(["public", name])


def test_split_statements_respects_quotes_bodies_and_comments():
    text = (
        "SELECT 'a;b';\n"
        "CREATE FUNCTION f() RETURNS int LANGUAGE sql AS $$ SELECT 1; $$;\n"
        '/* one; /* nested; */ still; */ SELECT "x;y" FROM t;\n'
        "SELECT E'it\\'s; fine';\n"
        "-- trailing comment; with a semicolon\n"
    )
    parts = [stmt.strip() for stmt, _ in pc.split_statements(text)]
    assert parts == [
        "SELECT 'a;b';",
        "CREATE FUNCTION f() RETURNS int LANGUAGE sql AS $$ SELECT 1; $$;",
        '/* one; /* nested; */ still; */ SELECT "x;y" FROM t;',
        "SELECT E'it\\'s; fine';",
    ]


def test_split_statements_offsets_point_into_the_text():
    text = "SELECT 1;\n\n-- about two\nSELECT 2;"
    (first, o1), (second, o2) = pc.split_statements(text)
    assert text[o1 : o1 + len(first)] == first
    assert pc.line_of_position(text, o2 + pc.code_offset(second) + 1) == 4


def test_split_statements_on_the_project_schema():
    schema = (Path(__file__).resolve().parents[2] / "roles/chatflow_database/files/schema.sql").read_text()
    statements = pc.split_statements(schema)
    assert all(stmt.rstrip().endswith(";") for stmt, _ in statements)
    assert sum(re.search(r"^CREATE TABLE \w+ \(", stmt, re.M) is not None for stmt, _ in statements) == 11
