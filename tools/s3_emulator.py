#!/usr/bin/env python3
"""A local S3 emulator over TLS for the tests: moto's S3, served by gunicorn, certificate from a CA of its own.

pgBackRest 2.45 speaks only HTTPS to S3, verifies the certificate against the endpoint's host *name* (not an IP
address), and keeps connections alive: moto's own development server closes them without a TLS shutdown
("unexpected eof while reading"), gunicorn's threaded worker does not.  Used by the molecule scenario
`security` (its prepare and cleanup steps); binds only to an address of a Docker network this machine created.

  s3_emulator.py start --dir DIR --bind IP --port N --name HOST --bucket NAME
      writes DIR/ca.crt (the CA to trust), the server's key and certificate (SAN: HOST and IP), starts the
      server in the background (DIR/gunicorn.pid, DIR/gunicorn.log), waits until it answers, creates the bucket,
      and prints {"url", "ca", "bucket", "name"} (also in DIR/emulator.json).
  s3_emulator.py stop --dir DIR
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import boto3
from botocore.exceptions import BotoCoreError, ClientError

APP = (
    "from moto.server import DomainDispatcherApplication, create_backend_app\n"
    "app = DomainDispatcherApplication(create_backend_app)\n"
)


class Failure(Exception):
    pass


def openssl(*args: str) -> None:
    res = subprocess.run(["openssl", *args], capture_output=True, text=True, check=False)
    if res.returncode != 0:
        raise Failure("openssl %s failed: %s" % (args[0], res.stderr.strip()))


def certificates(directory: Path, name: str, address: str) -> None:
    """A CA and a server certificate it signed, for the host name and the address."""
    openssl(
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "2",
        "-subj",
        "/CN=chatflow test S3 CA",
        "-keyout",
        str(directory / "ca.key"),
        "-out",
        str(directory / "ca.crt"),
    )
    openssl(
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-subj",
        "/CN=" + name,
        "-keyout",
        str(directory / "server.key"),
        "-out",
        str(directory / "server.csr"),
    )
    (directory / "san.cnf").write_text("subjectAltName=DNS:%s,IP:%s\n" % (name, address), encoding="utf-8")
    openssl(
        "x509",
        "-req",
        "-days",
        "2",
        "-in",
        str(directory / "server.csr"),
        "-CA",
        str(directory / "ca.crt"),
        "-CAkey",
        str(directory / "ca.key"),
        "-CAcreateserial",
        "-extfile",
        str(directory / "san.cnf"),
        "-out",
        str(directory / "server.crt"),
    )


def serve(directory: Path, bind: str, port: int, name: str) -> None:
    (directory / "motoapp.py").write_text(APP, encoding="utf-8")
    gunicorn = Path(sys.executable).parent / "gunicorn"
    argv = [
        str(gunicorn),
        "--chdir",
        str(directory),
        "--bind",
        "%s:%d" % (bind, port),
        "--workers",
        "1",
        "--worker-class",
        "gthread",
        "--threads",
        "8",
        "--keep-alive",
        "30",
        "--certfile",
        str(directory / "server.crt"),
        "--keyfile",
        str(directory / "server.key"),
        "--pid",
        str(directory / "gunicorn.pid"),
        "--daemon",
        "--log-file",
        str(directory / "gunicorn.log"),
        "motoapp:app",
    ]
    # Path-style buckets for this name (moto would take its first label for a bucket).
    env = dict(os.environ, MOTO_S3_CUSTOM_ENDPOINTS="https://%s:%d" % (name, port))
    subprocess.run(argv, check=True, env=env)


def client(url: str, ca: Path):
    return boto3.client(
        "s3",
        endpoint_url=url,
        region_name="us-east-1",
        verify=str(ca),
        aws_access_key_id="emulator",
        aws_secret_access_key="emulator",  # pragma: allowlist secret
    )


def create_bucket(url: str, ca: Path, bucket: str, timeout: float = 30.0) -> None:
    started = time.monotonic()
    while True:
        try:
            client(url, ca).create_bucket(Bucket=bucket)
            return
        except (BotoCoreError, ClientError) as exc:  # not up yet: connection refused, TLS not ready
            if time.monotonic() - started > timeout:
                raise Failure("the emulator at %s did not answer: %s" % (url, exc)) from exc
            time.sleep(0.5)


def cmd_start(args) -> dict:
    directory = Path(args.dir).resolve()
    directory.mkdir(parents=True, exist_ok=True)
    cmd_stop(args)
    certificates(directory, args.name, args.bind)
    serve(directory, args.bind, args.port, args.name)
    url = "https://%s:%d" % (args.bind, args.port)
    create_bucket(url, directory / "ca.crt", args.bucket)
    report = {"url": url, "ca": str(directory / "ca.crt"), "bucket": args.bucket, "name": args.name}
    (directory / "emulator.json").write_text(json.dumps(report), encoding="utf-8")
    return report


def cmd_stop(args) -> dict:
    pidfile = Path(args.dir) / "gunicorn.pid"
    if not pidfile.exists():
        return {"stopped": None}
    pid = int(pidfile.read_text().strip())
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    pidfile.unlink(missing_ok=True)
    return {"stopped": pid}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    start = sub.add_parser("start")
    start.add_argument("--dir", required=True)
    start.add_argument("--bind", required=True, help="an address of a Docker network of this machine")
    start.add_argument("--port", type=int, default=9443)
    start.add_argument("--name", required=True, help="the host name clients use (in the certificate)")
    start.add_argument("--bucket", required=True)
    start.set_defaults(func=cmd_start)
    stop = sub.add_parser("stop")
    stop.add_argument("--dir", required=True)
    stop.set_defaults(func=cmd_stop)
    args = parser.parse_args(argv)
    try:
        print(json.dumps(args.func(args)))
    except (Failure, subprocess.CalledProcessError) as exc:
        print("[s3-emulator] %s" % exc, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
