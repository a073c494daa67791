"""Row-level security on the provisioned host, through the env file's request URLs (direct and PgBouncer).

The service side (DATABASE_URL, the app role: BYPASSRLS) sets up a private channel of alice, a direct
message alice -> bob and a notification of alice, on the seed data; then requests acting for bob and
charlie, through DATABASE_REQUEST_URL and DATABASE_REQUEST_POOL_URL, try to see and change them.
Each request is one transaction that starts with set_config('app.user_id', ..., true).
"""

from __future__ import annotations

import shlex

import pytest

URLS = ["DATABASE_REQUEST_URL", "DATABASE_REQUEST_POOL_URL"]
SETUP = """
WITH a AS (SELECT id FROM users WHERE username = 'alice'), b AS (SELECT id FROM users WHERE username = 'bob'),
ch AS (INSERT INTO channels (workspace_id, name, type, creator_id)
       SELECT w.id, 'rls-probe', 'private', a.id FROM workspaces w, a ORDER BY w.created_at LIMIT 1 RETURNING id),
cm AS (INSERT INTO channel_members (channel_id, user_id, role) SELECT ch.id, a.id, 'owner' FROM ch, a),
m AS (INSERT INTO messages (channel_id, user_id, content) SELECT ch.id, a.id, 'rls-probe secret' FROM ch, a),
dm AS (INSERT INTO direct_messages (conversation_id, sender_id, recipient_id, content)
       SELECT gen_random_uuid(), a.id, b.id, 'rls-probe dm' FROM a, b)
INSERT INTO notifications (user_id, type, actor_id) SELECT a.id, 'rls-probe', b.id FROM a, b
"""
TEARDOWN = """
DELETE FROM channels WHERE name = 'rls-probe';
DELETE FROM direct_messages WHERE content = 'rls-probe dm';
DELETE FROM notifications WHERE type = 'rls-probe'
"""


@pytest.fixture(scope="module")
def probe(sh):
    sh.app_sql(TEARDOWN)
    created = sh.app_sql(SETUP)
    assert created.rc == 0, created.stderr
    yield
    sh.app_sql(TEARDOWN)


def request(sh, url: str, user: str | None, sql: str):
    """One transaction through url acting for the seed user `user` (None: app.user_id not set). The
    user's id comes from the service side: a request without a user cannot read users."""
    act = ""
    if user:
        uid = sh.app_sql(f"SELECT id FROM users WHERE username = '{user}'").stdout.strip()
        act = f"SELECT set_config('app.user_id', '{uid}', true) \\g /dev/null\n"
    script = f"BEGIN;\n{act}{sql};\nCOMMIT;\n"
    return sh.app(f'printf %s {shlex.quote(script)} | psql "${url}" -X -v ON_ERROR_STOP=1 -At')


def value(result) -> str:
    assert result.rc == 0, result.stderr
    lines = [line for line in result.stdout.splitlines() if line not in ("BEGIN", "COMMIT")]
    return lines[-1] if lines else ""


@pytest.mark.parametrize("url", URLS)
def test_the_request_role_is_subject_to_rls(sh, url):
    result = sh.app(
        f'psql "${url}" -XAtc "SELECT current_user, rolbypassrls FROM pg_roles WHERE rolname = current_user"'
    )
    assert result.rc == 0, result.stderr
    assert result.stdout.strip().endswith("|f")


@pytest.mark.parametrize("url", URLS)
def test_a_member_sees_its_private_channel_and_others_do_not(sh, probe, url):
    count = "SELECT count(*) FROM messages m JOIN channels c ON c.id = m.channel_id WHERE c.name = 'rls-probe'"
    assert value(request(sh, url, "alice", count)) == "1"
    assert value(request(sh, url, "bob", count)) == "0"
    assert value(request(sh, url, "bob", "SELECT count(*) FROM channels WHERE name = 'rls-probe'")) == "0"


@pytest.mark.parametrize("url", URLS)
def test_no_one_writes_into_anothers_private_channel(sh, probe, url):
    insert = (
        "INSERT INTO messages (channel_id, user_id, content) SELECT c.id, u.id, 'intruder' "
        "FROM channels c, users u WHERE c.name = 'rls-probe' AND u.username = 'bob'"
    )
    assert value(request(sh, url, "bob", insert)) == "INSERT 0 0"  # the channel is not even visible
    forged = (
        "INSERT INTO messages (channel_id, user_id, content) "
        "SELECT (SELECT channel_id FROM channel_members LIMIT 1), id, 'as alice' FROM users WHERE username = 'alice'"
    )
    result = request(sh, url, "bob", forged)
    assert result.rc != 0 and "row-level security" in result.stderr, result.stderr


@pytest.mark.parametrize("url", URLS)
def test_direct_messages_and_notifications_stay_their_users(sh, probe, url):
    dms = "SELECT count(*) FROM direct_messages WHERE content = 'rls-probe dm'"
    assert value(request(sh, url, "bob", dms)) == "1"
    assert value(request(sh, url, "charlie", dms)) == "0"
    notes = "SELECT count(*) FROM notifications WHERE type = 'rls-probe'"
    assert value(request(sh, url, "alice", notes)) == "1"
    assert value(request(sh, url, "bob", notes)) == "0"


@pytest.mark.parametrize("url", URLS)
def test_without_a_user_a_request_sees_nothing(sh, probe, url):
    for table in ("users", "channels", "messages", "direct_messages", "notifications"):
        assert value(request(sh, url, None, f"SELECT count(*) FROM {table}")) == "0", table
    # The seed's own checks as the service side (DATABASE_URL, no user): everything.
    assert int(sh.app_sql("SELECT count(*) FROM users").stdout) >= 3


@pytest.mark.parametrize("url", URLS)
def test_channel_stats_only_through_my_channel_stats(sh, url):
    denied = sh.app(f'psql "${url}" -XAtc "SELECT count(*) FROM channel_stats"')
    assert denied.rc != 0 and "permission denied" in denied.stderr
    assert value(request(sh, url, "bob", "SELECT count(*) FROM my_channel_stats()")) == "1"  # #general
