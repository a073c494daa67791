"""The plans of the app's hot queries: each uses an index, none reads messages sequentially.

A database built from roles/chatflow_database/files/schema.sql gets a generated data set (tools/bench/
datagen.py, 100,000 messages) and the planner settings of the tuned
configuration; then every query of tools/bench/workload.py (the very SQL the
benchmark runs) is EXPLAINed with real parameters.  Plans, not timings: the
assertions hold on any machine.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import sys
import tempfile
from pathlib import Path

import psycopg2
import psycopg2.extras
import pytest
import yaml
from pgtest import BINDIR, PORT, ROOT, psql, psql_file

sys.path.insert(0, str(ROOT))
from tools.bench import datagen, pgbench_mix, pgbench_rls, rls, workload

DB = "chatflow_plans"
MESSAGES = 100_000
# The index each query is meant to use (its first choice on this data).
EXPECTED = {
    "channel_history": {"idx_messages_channel_live"},
    "open_thread": {"idx_messages_thread_id"},
    "unread_counts": {"idx_channel_members_user_id", "idx_messages_channel_live"},
    "notifications": {"idx_notifications_user_is_read"},
    "search_fulltext": {"idx_messages_channel_fts"},
    "search_fuzzy": {"idx_messages_content_trigram"},
    "post_message": set(),
    "add_reaction": set(),
}
# Planner settings of the tuned configuration for SSD storage (role chatflow_postgresql).
PLANNER = ("SET random_page_cost = 1.1", "SET effective_io_concurrency = 200", "SET jit = off")


@pytest.fixture(scope="module")
def plans_db(cluster):
    psql(cluster, f"DROP DATABASE IF EXISTS {DB} WITH (FORCE)", db="postgres")
    psql(cluster, f"CREATE DATABASE {DB} TEMPLATE template0", db="postgres")
    out = psql_file(cluster, ROOT / "roles/chatflow_database/files/schema.sql", db=DB)
    assert out.returncode == 0, out.stderr
    tmp = Path(tempfile.mkdtemp(prefix="chatflow-plans-"))
    try:
        summary = datagen.generate(tmp, datagen.Scale.for_messages(MESSAGES))
        os.chmod(tmp, 0o755)
        if os.geteuid() == 0:
            shutil.chown(tmp, "postgres")
        copies = "; ".join(f"COPY {t} ({', '.join(cols)}) FROM '{tmp}/{t}.tsv'" for t, cols in datagen.COLUMNS.items())
        psql(cluster, f"BEGIN; {copies}; COMMIT", db=DB)
        psql(cluster, "VACUUM ANALYZE", db=DB)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    conn = psycopg2.connect(host=str(cluster), port=PORT, user="postgres", dbname=DB)
    conn.autocommit = True
    cur = conn.cursor()
    for s in PLANNER:
        cur.execute(s)
    catalog = workload.Catalog(cur, summary.search_words, summary.fuzzy_fragments, random.Random(5))
    yield cur, catalog
    conn.close()


def plan_nodes(plan: dict):
    yield plan
    for child in plan.get("Plans", []):
        yield from plan_nodes(child)


def explain(cur, op: str, params: dict) -> list[dict]:
    sql = workload.QUERIES[op]
    # EXPLAIN without ANALYZE: the writes are planned, not run.
    cur.execute("EXPLAIN (FORMAT JSON) " + sql, params)
    doc = cur.fetchone()[0]
    doc = json.loads(doc) if isinstance(doc, str) else doc
    return list(plan_nodes(doc[0]["Plan"]))


@pytest.mark.parametrize("op", sorted(workload.QUERIES))
def test_hot_query_uses_its_index_and_never_scans_messages(plans_db, op):
    cur, catalog = plans_db
    for attempt in range(5):  # several real parameter sets per query
        params = catalog.params(op)
        if op == "search_fuzzy":
            params["pattern"] = f"%{catalog.fragments[attempt]}%"
        nodes = explain(cur, op, params)
        seq = [n for n in nodes if n["Node Type"] == "Seq Scan" and n.get("Relation Name") == "messages"]
        assert not seq, f"{op} reads messages sequentially with {params}"
        used = {n["Index Name"] for n in nodes if "Index Name" in n}
        for node in nodes:
            if node["Node Type"] == "Seq Scan":
                # Only tiny tables may be read whole (e.g. none in the hot path today).
                assert node.get("Relation Name") not in {"messages", "reactions", "notifications", "channel_members"}, (
                    f"{op} reads {node.get('Relation Name')} sequentially"
                )
        if op == "search_fuzzy":
            # A common fragment may rather walk the newest messages by index; any index will do,
            # and the rarest fragments must use the trigram index.
            assert used, f"{op} uses no index with {params}"
            continue
        assert EXPECTED[op] <= used, f"{op} uses {used}, expected {EXPECTED[op]} with {params}"


def test_rare_fuzzy_fragment_uses_the_trigram_index(plans_db):
    cur, catalog = plans_db
    cur.execute(
        "SELECT f FROM unnest(%s::text[]) AS f "
        "ORDER BY (SELECT count(*) FROM messages WHERE content ILIKE '%%' || f || '%%') LIMIT 1",
        (catalog.fragments,),
    )
    rare = cur.fetchone()[0]
    params = catalog.params("search_fuzzy") | {"pattern": f"%{rare}%"}
    used = {n.get("Index Name") for n in explain(cur, "search_fuzzy", params)}
    assert "idx_messages_content_trigram" in used


def test_no_redundant_btree_index(plans_db):
    """No B-tree index is a leading-column prefix of another on the same table with the same predicate."""
    cur, _ = plans_db
    cur.execute(
        """
        SELECT a.indexrelid::regclass::text, b.indexrelid::regclass::text
        FROM pg_index a JOIN pg_index b ON a.indrelid = b.indrelid AND a.indexrelid <> b.indexrelid
        JOIN pg_class ca ON ca.oid = a.indexrelid JOIN pg_am am ON am.oid = ca.relam
        JOIN pg_class cb ON cb.oid = b.indexrelid
        WHERE am.amname = 'btree' AND cb.relam = ca.relam AND NOT a.indisunique
          AND a.indrelid::regclass::text NOT LIKE 'pg_%%'
          AND a.indnkeyatts <= b.indnkeyatts
          AND (a.indkey::int2[])[0:a.indnkeyatts - 1] = (b.indkey::int2[])[0:a.indnkeyatts - 1]
          AND a.indexprs IS NULL AND b.indexprs IS NULL
          AND pg_get_expr(a.indpred, a.indrelid) IS NOT DISTINCT FROM pg_get_expr(b.indpred, b.indrelid)
          AND a.indoption::int2[] = (b.indoption::int2[])[0:a.indnkeyatts - 1]
        """
    )
    assert cur.fetchall() == []


def test_foreign_key_lookups_on_big_tables_use_an_index(plans_db):
    """Deleting a channel, user or message looks up the referencing rows: never by reading the table."""
    cur, _ = plans_db
    cur.execute(
        """
        SELECT c.conrelid::regclass::text, a.attname
        FROM pg_constraint c JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = c.conkey[1]
        WHERE c.contype = 'f'
          AND c.conrelid::regclass::text IN ('messages', 'reactions', 'notifications', 'channel_members')
        ORDER BY 1, 2
        """
    )
    fks = cur.fetchall()
    assert len(fks) >= 10
    for table, column in fks:
        cur.execute(f"SELECT {column} FROM {table} WHERE {column} IS NOT NULL LIMIT 1")
        row = cur.fetchone()
        value = row[0] if row else "00000000-0000-4000-8000-000000000000"  # a column the data leaves empty
        cur.execute(
            f"EXPLAIN (FORMAT JSON) SELECT 1 FROM ONLY {table} x WHERE {column} = %s FOR KEY SHARE OF x", (value,)
        )
        doc = cur.fetchone()[0]
        nodes = list(plan_nodes((json.loads(doc) if isinstance(doc, str) else doc)[0]["Plan"]))
        assert not [n for n in nodes if n["Node Type"] == "Seq Scan"], f"{table}.{column}: {nodes[0]}"


# --- the same queries under row-level security (a request acting for a user) ------------------

RLS_ROLES = {"plans_request": "NOBYPASSRLS", "plans_bypass": "BYPASSRLS"}
# Rounds of the cost printout per operation (CHATFLOW_RLS_ROUNDS=200 for docs/performance/rls.md).
ROUNDS = int(os.environ.get("CHATFLOW_RLS_ROUNDS", "40"))
# Transactions of each pgbench run of the cost printout (CHATFLOW_RLS_TRANSACTIONS=3000 for the docs).
TRANSACTIONS = int(os.environ.get("CHATFLOW_RLS_TRANSACTIONS", "100"))


@pytest.fixture(scope="module")
def rls_cursors(cluster, plans_db):
    """Cursors of a role subject to row-level security and of one that bypasses it, with the
    grants the provisioning gives (tables, the functions of migration R__05)."""
    admin, _ = plans_db
    functions = yaml.safe_load((ROOT / "roles/chatflow_database/vars/main.yml").read_text())[
        "__chatflow_database_rls_functions"
    ]
    conns = []
    for role, flag in RLS_ROLES.items():
        admin.execute(f"DROP OWNED BY {role}" if _role_exists(admin, role) else "SELECT 1")
        admin.execute(f"DROP ROLE IF EXISTS {role}")
        admin.execute(f"CREATE ROLE {role} LOGIN {flag}")
        admin.execute(f"GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {role}")
        admin.execute(f"GRANT EXECUTE ON FUNCTION {', '.join(f.replace(':', ',') for f in functions)} TO {role}")
        for s in PLANNER:  # every session of the role, whichever client opens it
            admin.execute(f"ALTER ROLE {role} {s}")
        conn = psycopg2.connect(_dsn(cluster, role))
        conn.autocommit = True
        conns.append(conn)
    yield conns[0].cursor(), conns[1].cursor()
    for conn in conns:
        conn.close()


def _dsn(cluster, role: str) -> str:
    return f"host={cluster} port={PORT} user={role} dbname={DB}"


def _role_exists(cur, role: str) -> bool:
    cur.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,))
    return cur.fetchone() is not None


def explain_as_user(cur, op: str, params: dict) -> list[dict]:
    cur.execute("BEGIN")
    cur.execute(workload.SET_USER, params)
    cur.execute("EXPLAIN (FORMAT JSON) " + workload.REQUEST_QUERIES[op], params)
    doc = cur.fetchone()[0]
    cur.execute("ROLLBACK")
    return list(plan_nodes((json.loads(doc) if isinstance(doc, str) else doc)[0]["Plan"]))


# The operations a request runs through SECURITY DEFINER functions (their own plans checked below).
FUNCTION_OPS = sorted(op for op in workload.QUERIES if workload.REQUEST_QUERIES[op] != workload.QUERIES[op])


@pytest.mark.parametrize("op", sorted(set(workload.QUERIES) - set(FUNCTION_OPS)))
def test_hot_query_keeps_its_index_under_row_level_security(plans_db, rls_cursors, op):
    """The policies add leakproof uuid comparisons with arrays computed once (InitPlans): the
    query's own index conditions stay, and nothing reads messages sequentially."""
    _admin, catalog = plans_db
    request, _bypass = rls_cursors
    for _ in range(5):
        params = catalog.params(op)
        nodes = explain_as_user(request, op, params)
        used = {n["Index Name"] for n in nodes if "Index Name" in n}
        assert not [n for n in nodes if n["Node Type"] == "Seq Scan" and n.get("Relation Name") == "messages"], op
        assert EXPECTED[op] <= used, f"{op} under RLS uses {used}, expected {EXPECTED[op]}"


def _nested_plans(cur, sql: str, params: dict, warmup: tuple[dict, ...] = ()) -> list[dict]:
    """The plans of the statements a function runs (auto_explain to the client as notices), in
    its call with params after calls with each of warmup in the same session."""
    cur.execute("LOAD 'auto_explain'")
    for setting in ("log_min_duration = 0", "log_nested_statements = on", "log_format = json", "log_level = notice"):
        cur.execute(f"SET auto_explain.{setting}")
    cur.execute("BEGIN")
    cur.execute(workload.SET_USER, params)
    for earlier in warmup:
        cur.execute(sql, earlier)
    cur.connection.notices.clear()
    cur.execute(sql, params)
    cur.execute("ROLLBACK")
    cur.execute("SET auto_explain.log_min_duration = -1")
    plans = []
    for notice in cur.connection.notices:
        body = notice[notice.index("{") :]
        plans.append(json.loads(body)["Plan"])
    return [node for plan in plans for node in plan_nodes(plan)]


@pytest.mark.parametrize("op", FUNCTION_OPS)
def test_request_functions_keep_their_plans(plans_db, op):
    """search_messages(), search_messages_fuzzy() and my_unread_counts() (SECURITY DEFINER: no
    policy in the way) use the indexes of the unrestricted queries, search with its operator as
    an index condition."""
    admin, catalog = plans_db
    params = catalog.params(op)
    if op == "search_fuzzy":  # the rarest fragment, as test_rare_fuzzy_fragment_uses_the_trigram_index
        admin.execute(
            "SELECT f FROM unnest(%s::text[]) AS f "
            "ORDER BY (SELECT count(*) FROM messages WHERE content ILIKE '%%' || f || '%%') LIMIT 1",
            (catalog.fragments,),
        )
        params["pattern"] = f"%{admin.fetchone()[0]}%"
    # PL/pgSQL plans a static query for the first five calls of a session, then may keep a
    # generic plan: the call checked comes after six with other search terms.
    warmup = tuple(catalog.params(op) for _ in range(6))
    nodes = _nested_plans(admin, workload.REQUEST_QUERIES[op], params, warmup)
    used = {n["Index Name"] for n in nodes if "Index Name" in n}
    assert not [n for n in nodes if n["Node Type"] == "Seq Scan" and n.get("Relation Name") == "messages"], op
    expected = {"search_fuzzy": {"idx_messages_content_trigram"}}.get(op, EXPECTED[op])
    assert expected <= used, f"{op} inside its function uses {used}, expected {expected}"
    operator = {"search_fulltext": "@@", "search_fuzzy": "~~*"}.get(op)
    if operator:
        index = next(iter(expected))
        conditions = [
            n.get("Index Cond", "") + n.get("Recheck Cond", "") for n in nodes if n.get("Index Name") == index
        ]
        assert any(operator in c for c in conditions), conditions


def _search_buffers(cur, params: dict) -> int:
    """The buffers one full-text search reads (EXPLAIN ANALYZE, the unrestricted statement)."""
    cur.execute("EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) " + workload.QUERIES["search_fulltext"], params)
    doc = cur.fetchone()[0]
    plan = (json.loads(doc) if isinstance(doc, str) else doc)[0]["Plan"]
    return plan.get("Shared Hit Blocks", 0) + plan.get("Shared Read Blocks", 0)


def test_search_stays_cheap_while_messages_arrive(plans_db):
    """V010: search asks idx_messages_channel_fts once per channel of the user, so a GIN pending
    list (new entries waiting for VACUUM) would be read that many times.  After 3,000 posts (rolled
    back: their entries reach the index all the same) the search of the user in the most channels
    reads about what it read before."""
    admin, catalog = plans_db
    admin.execute("SELECT user_id FROM channel_members GROUP BY user_id ORDER BY count(*) DESC LIMIT 1")
    user = admin.fetchone()[0]
    params = {**catalog.params("search_fulltext"), "user": user}
    before = _search_buffers(admin, params)
    posts = [catalog.params("post_message") for _ in range(3000)]
    admin.execute("BEGIN")
    try:
        psycopg2.extras.execute_batch(admin, workload.QUERIES["post_message"], posts, page_size=500)
    finally:
        admin.execute("ROLLBACK")
    try:
        after = _search_buffers(admin, params)
    finally:
        admin.execute("VACUUM messages")
    assert after <= 2 * before + 50, f"a search read {before} buffers before 3,000 posts and {after} after"


@pytest.mark.parametrize("protocol", rls.PROTOCOLS)
def test_row_level_security_cost_printout(cluster, plans_db, rls_cursors, protocol):
    """The benchmark of tools/bench/rls.py on this data, in each protocol: prints each hot query's
    p50/p95 as a request (RLS) and unrestricted, and their ratio (numbers, not asserted); asserts
    both return the same rows."""
    admin, catalog = plans_db
    sides = [rls.Client(_dsn(cluster, role), protocol) for role in RLS_ROLES]
    try:
        report = rls.compare(admin, sides[1], sides[0], catalog, rounds=ROUNDS)
    finally:
        for side in sides:
            side.close()
    print(f"\nrow-level security, {MESSAGES} messages, {protocol}, {ROUNDS} rounds (ms: unrestricted -> request)")
    for op, entry in report.items():
        bypass, request = entry["bypass"], entry["request"]
        print(
            f"  {op:16} p50 {bypass['p50']:7.3f} -> {request['p50']:7.3f}   "
            f"p95 {bypass['p95']:7.3f} -> {request['p95']:7.3f}   x{entry['ratio_p50']}"
        )
    assert all(entry["mismatches"] == 0 for entry in report.values()), report


def test_row_level_security_cost_with_pgbench(cluster, plans_db, rls_cursors):
    """tools/bench/pgbench_rls.py on this data: each hot query's mean latency as pgbench (a C
    client) sees it, as a request and unrestricted, in the extended protocol (planned at each
    execution, as through PgBouncer) and with prepared statements (numbers, not asserted)."""
    admin, catalog = plans_db
    pgbench_rls.fill_parameters(admin, catalog, rows=100)
    dsns = {"bypass": _dsn(cluster, "plans_bypass"), "request": _dsn(cluster, "plans_request")}
    report = pgbench_rls.compare(dsns, 100, TRANSACTIONS, rounds=1, pgbench=str(BINDIR / "pgbench"))
    print(f"\nrow-level security with pgbench, {MESSAGES} messages, {TRANSACTIONS} transactions (ms, mean)")
    for protocol, ops in report.items():
        for op, entry in ops.items():
            print(f"  {protocol:8} {op:16} {entry['bypass']:7.3f} -> {entry['request']:7.3f}   x{entry['ratio']}")
    assert set(report) == set(pgbench_rls.PROTOCOLS)
    assert all(set(ops) == set(workload.QUERIES) for ops in report.values()), report


@pytest.mark.parametrize("protocol", pgbench_mix.PROTOCOLS)
def test_the_pgbench_mix_runs_every_operation(cluster, plans_db, rls_cursors, protocol):
    """tools/bench/pgbench_mix.py on this data (writes committed, so it runs last): every operation
    of the mix runs in its weight's share without an error, each with a statement latency and
    percentiles; the client's CPU is counted.  The numbers are printed, not asserted."""
    admin, catalog = plans_db
    pgbench_mix.fill_parameters(admin, catalog, rows=50)
    result = pgbench_mix.run_mix(
        _dsn(cluster, "plans_bypass"), clients=2, seconds=3, protocol=protocol, rows=50, pgbench=str(BINDIR / "pgbench")
    )
    print(f"\npgbench mix, {protocol}: {result['tps']} tps, cpu {result['cpu']}")
    ops = result["ops"]
    assert set(ops) == set(workload.WEIGHTS)
    shares = {op: ops[op]["n"] / result["transactions"] for op in ops}
    weights = {op: w / sum(workload.WEIGHTS.values()) for op, w in workload.WEIGHTS.items()}
    assert all(abs(shares[op] - weights[op]) < 0.1 for op in ops), (shares, weights)
    assert all(0 < ops[op]["statement_mean"] <= ops[op]["p99"] * 1.5 for op in ops), ops
    assert 0 < result["cpu"]["client_s"] < result["cpu"]["machine_s"], result["cpu"]
