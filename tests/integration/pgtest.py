"""Helpers of the integration tests: a throwaway PostgreSQL 15 and the modules run as Ansible runs them.

The cluster (initdb in a temporary directory, unix socket only, no TCP) runs
as the postgres OS user; a module is executed with a JSON argument file, the
way Ansible executes it on a managed host.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
MODULES = ROOT / "collections/ansible_collections/chatflow/db/plugins/modules"
BINDIR = Path(os.environ.get("PG_BINDIR", "/usr/lib/postgresql/15/bin"))
PORT = 55432
HAVE_SERVER = (BINDIR / "initdb").exists()


def as_postgres(*cmd: str) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *cmd] if os.geteuid() == 0 else list(cmd)


def start_cluster() -> tuple[Path, Path]:
    """Start a cluster; return (its temporary directory, its socket directory)."""
    tmp = Path(tempfile.mkdtemp(prefix="chatflow-pg-"))
    data, sock = tmp / "data", tmp / "sock"
    sock.mkdir()
    if os.geteuid() == 0:
        shutil.chown(tmp, "postgres")
        shutil.chown(sock, "postgres")
    subprocess.run(
        as_postgres(
            str(BINDIR / "initdb"), "-D", str(data), "-U", "postgres", "-A", "trust", "-E", "UTF8", "--locale=C.UTF-8"
        ),
        check=True,
        capture_output=True,
    )
    subprocess.run(
        as_postgres(
            str(BINDIR / "pg_ctl"),
            "-D",
            str(data),
            "-l",
            str(tmp / "log"),
            "-w",
            "start",
            "-o",
            f"-k {sock} -c listen_addresses='' -p {PORT}",
        ),
        check=True,
        capture_output=True,
    )
    return tmp, sock


def stop_cluster(tmp: Path) -> None:
    subprocess.run(
        as_postgres(str(BINDIR / "pg_ctl"), "-D", str(tmp / "data"), "-m", "immediate", "stop"),
        check=False,
        capture_output=True,
    )
    shutil.rmtree(tmp, ignore_errors=True)


def psql_args(sock: Path, db: str) -> list[str]:
    return [str(BINDIR / "psql"), "-h", str(sock), "-p", str(PORT), "-U", "postgres", "-d", db]


def psql(sock: Path, sql: str, db: str = "chatflow_mvp") -> str:
    """Run SQL with psql as postgres (stops at the first error); return the unaligned output."""
    out = subprocess.run(
        [*psql_args(sock, db), "-XAtq", "-v", "ON_ERROR_STOP=1", "-c", sql],
        check=True,
        capture_output=True,
        text=True,
    )
    return out.stdout.strip()


def psql_file(
    sock: Path, path: Path, db: str = "chatflow_mvp", stop_on_error: bool = True, role: str | None = None
) -> subprocess.CompletedProcess:
    """Run a file with psql (as a person would paste it, optionally going on after errors, optionally as role)."""
    env = dict(os.environ, PGOPTIONS=f"-c role={role}") if role else None
    return subprocess.run(
        [*psql_args(sock, db), "-Xq", "-v", f"ON_ERROR_STOP={int(stop_on_error)}", "-f", str(path)],
        check=False,
        env=env,
        capture_output=True,
        text=True,
    )


def nologin_role(sock: Path, name: str) -> None:
    """Create a NOLOGIN role unless it exists."""
    psql(
        sock,
        f"DO $$BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{name}') "
        f"THEN CREATE ROLE {name} NOLOGIN; END IF; END$$",
        db="postgres",
    )


def fresh_database(sock: Path, owner: str = "chatflow_owner", name: str = "chatflow_mvp") -> None:
    """Drop and create the database, owned by a NOLOGIN owner role."""
    psql(sock, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)", db="postgres")
    nologin_role(sock, owner)
    psql(sock, f"CREATE DATABASE {name} OWNER {owner} TEMPLATE template0", db="postgres")


def run_module(module: str, sock: Path, check: bool = False, **args) -> dict:
    """Run a chatflow.db module against the cluster; return its result with its exit code as rc."""
    return run_module_file(MODULES / f"{module}.py", sock, check, **args)


def run_module_file(module_path: Path, sock: Path, check: bool = False, **args) -> dict:
    """Run the module at path (any collection's) against the cluster; its result with its exit code as rc."""
    params = {
        "login_db": "chatflow_mvp",
        "login_unix_socket": str(sock),
        "login_port": PORT,
        "login_user": "postgres",
        "_ansible_check_mode": check,
        "_ansible_diff": True,
        **args,
    }
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as handle:
        json.dump({"ANSIBLE_MODULE_ARGS": params}, handle)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT / "collections"), *sys.path]))
    proc = subprocess.run(
        [sys.executable, str(module_path), handle.name],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    os.unlink(handle.name)
    try:
        result = json.loads(proc.stdout)
    except json.JSONDecodeError as exc:
        raise AssertionError(f"{module_path.name} printed no JSON:\n{proc.stdout}\n{proc.stderr}") from exc
    result["rc"] = proc.returncode
    return result


def table_checksums(sock: Path, db: str = "chatflow_mvp", schema: str = "public") -> dict[str, str]:
    """{table: 'rows:md5 of its rows in primary key order'}: to prove no row was lost or changed."""
    tables = psql(
        sock, f"SELECT string_agg(tablename, ' ' ORDER BY tablename) FROM pg_tables WHERE schemaname = '{schema}'", db
    ).split()
    sums = {}
    for table in tables:
        sums[table] = psql(
            sock,
            f"SELECT count(*) || ':' || coalesce(md5(string_agg(t::text, '|' ORDER BY t::text)), '') "
            f"FROM {schema}.{table} t",
            db,
        )
    return sums
