#!/usr/bin/python3
"""Tell whether the running Redis differs from its files (runtime drift).

CONFIG SET and ACL SETUSER change a running Redis without touching
redis.conf or the ACL file, so comparing files finds nothing.  This starts a
throwaway redis-server from the same redis.conf and ACL file (on a private
unix socket, no TCP, a temporary dir), reads its canonical `ACL LIST` and the
managed settings, reads the same from the live server, and prints JSON:

  {"config": {"maxmemory": ["268435456", "1000"]}, "acl": true}

(setting: [expected, live]).  It changes nothing on the live server.  The
live server's admin password comes from stdin (--password-stdin) or REDISCLI_AUTH.
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

SETTINGS = [
    "bind",
    "protected-mode",
    "port",
    "tls-port",
    "tls-cert-file",
    "tls-key-file",
    "tls-protocols",
    "maxmemory",
    "maxmemory-policy",
    "appendonly",
    "appendfsync",
    "save",
    "aclfile",
    "requirepass",
    "enable-debug-command",
    "enable-module-command",
    "enable-protected-configs",
]
# What the throwaway server is started with differently from the file.
OVERRIDDEN = {"port", "tls-port"}
# Their values when the file does not set them.
BUILTIN = {"port": "6379", "tls-port": "0"}


def cli(args, auth=None, socket=None, port=None, user=None):
    cmd = ["redis-cli", "--no-auth-warning"]
    if socket:
        cmd += ["-s", socket]
    else:
        cmd += ["-p", str(port)]
    if user:
        cmd += ["--user", user]
    env = dict(os.environ)
    env.pop("REDISCLI_AUTH", None)
    if auth:
        env["REDISCLI_AUTH"] = auth
    proc = subprocess.run(cmd + args, capture_output=True, text=True, env=env, check=False)
    if proc.returncode != 0 or proc.stdout.startswith(("NOAUTH", "WRONGPASS", "NOPERM", "ERR")):
        raise RuntimeError("redis-cli %s failed: %s%s" % (" ".join(args), proc.stdout, proc.stderr))
    return proc.stdout


def config(reader):
    """The managed settings, read with one CONFIG GET (Redis 7 takes several names)."""
    lines = reader(["CONFIG", "GET", *SETTINGS]).splitlines()
    values = dict.fromkeys(SETTINGS, "")
    values.update(zip(lines[0::2], lines[1::2], strict=False))
    return values


def acl(reader):
    """Each user's rules as a set: Redis lists command rules in hash order."""
    users = {}
    for line in reader(["ACL", "LIST"]).splitlines():
        tokens = line.split()
        if len(tokens) > 1 and tokens[0] == "user":
            users[tokens[1]] = sorted(tokens[2:])
    return users


def reference(conf, user, password):
    """Start redis-server from the files on a private socket and read it."""
    workdir = tempfile.mkdtemp(prefix="redis-drift-")
    shutil.chown(workdir, "redis", "redis")
    socket = os.path.join(workdir, "redis.sock")
    # Popen drops to the redis user itself: runuser would wait 2 s before
    # passing SIGTERM on, so the reference server would not stop at once.
    command = ["redis-server", conf, "--port", "0", "--tls-port", "0",
               "--unixsocket", socket, "--unixsocketperm", "700",
               "--dir", workdir, "--pidfile", os.path.join(workdir, "pid"), "--logfile", "",
               "--daemonize", "no", "--supervised", "no"]  # fmt: skip
    proc = subprocess.Popen(
        command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, user="redis", group="redis"
    )
    try:
        for _ in range(100):
            if os.path.exists(socket):
                break
            if proc.poll() is not None:
                raise RuntimeError("reference redis-server exited: %s" % proc.stderr.read())
            time.sleep(0.05)

        def reader(args):
            return cli(args, auth=password, socket=socket, user=user)

        return config(reader), acl(reader)
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        shutil.rmtree(workdir, ignore_errors=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--conf", default="/etc/redis/redis.conf")
    parser.add_argument("--port", type=int, default=6379)
    parser.add_argument("--user", required=True, help="admin ACL user")
    parser.add_argument(
        "--password-stdin", action="store_true", help="read the user's password from the first line of stdin"
    )
    args = parser.parse_args()
    # On stdin, never on a command line or in an environment that sudo logs.
    password = sys.stdin.readline().rstrip("\n") if args.password_stdin else os.environ.get("REDISCLI_AUTH", "")

    want_config, want_acl = reference(args.conf, args.user, password)

    def live(cmd):
        return cli(cmd, auth=password, port=args.port, user=args.user)

    have_config, have_acl = config(live), acl(live)
    # The reference listens on no TCP port: compare the port with the file.
    file_values = {}
    with open(args.conf, encoding="utf-8") as handle:
        for line in handle:
            parts = line.split(None, 1)
            if len(parts) == 2 and not parts[0].startswith("#"):
                file_values[parts[0].lower()] = parts[1].strip()
    for name in OVERRIDDEN:
        want_config[name] = file_values.get(name, BUILTIN[name])
    drift = {k: [want_config[k], have_config[k]] for k in SETTINGS if want_config[k] != have_config[k]}
    json.dump({"config": drift, "acl": want_acl != have_acl}, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
