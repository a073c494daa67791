#!/usr/bin/env python3
"""Local container plumbing for the sandbox and the molecule scenarios.

Everything here works on this kind of machine: no image registry, no Docker
engine running at first.  Subcommands:

  host-deps      install docker.io and debootstrap when they are missing (the sandbox)
  test-deps      install PostgreSQL 15, openssl, redis-tools and graphviz (tests, docs)
  docker-up      start dockerd when it is not running (records that we did)
  docker-down    stop dockerd, but only if docker-up started it
  image          build the systemd base image with debootstrap when missing
  sandbox-up     start the `chatflow-sandbox` systemd container (kept running)
  sandbox-down   remove the sandbox container

The container options are the ones NOTES.md measured for a systemd container
without --privileged.  No container or network ever gets an address outside
Docker's default bridge.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
STATE = ROOT / ".state"
IMAGE = os.environ.get("CHATFLOW_IMAGE", "chatflow-debian12-systemd:latest")
SANDBOX = os.environ.get("CHATFLOW_SANDBOX", "chatflow-sandbox")
SUITE = "bookworm"
# What the base image carries: enough for Ansible to manage it like a fresh VM.
INCLUDE = [
    "systemd",
    "systemd-sysv",
    "dbus",
    "python3",
    "sudo",
    "ca-certificates",
    "iproute2",
    "procps",
]
SYSTEMD_RUN_OPTS = [
    "--cap-add",
    "SYS_ADMIN",
    "--cap-add",
    "NET_ADMIN",
    "--security-opt",
    "seccomp=unconfined",
    "--security-opt",
    "apparmor=unconfined",
    "--cgroupns",
    "host",
    "-v",
    "/sys/fs/cgroup:/sys/fs/cgroup:rw",
    "--tmpfs",
    "/run",
    "--tmpfs",
    "/run/lock",
]


def log(msg: str) -> None:
    print(f"[hostctl] {msg}", flush=True)


def run(cmd: list[str], **kw) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, check=True, **kw)


def quiet(cmd: list[str]) -> bool:
    return subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False).returncode == 0


def recipe_hash() -> str:
    """Identify the image recipe, so a changed recipe rebuilds the image."""
    digest = hashlib.sha256()
    digest.update(" ".join(INCLUDE).encode())
    digest.update(SUITE.encode())
    digest.update(b"v2")
    return digest.hexdigest()[:12]


PG_INITDB = Path("/usr/lib/postgresql/15/bin/initdb")


def _apt_install(missing: list[str]) -> int:
    if os.geteuid() != 0:
        log(f"need root to install {' '.join(missing)}")
        return 1
    log(f"installing {' '.join(missing)}")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    run(["apt-get", "update", "-qq"], env=env)
    run(["apt-get", "install", "-y", "-qq", "--no-install-recommends", *missing], env=env, stdout=subprocess.DEVNULL)
    return 0


def host_deps(_args) -> int:
    """Install what the sandbox needs on this machine: Docker's engine and
    debootstrap (the base image is built with it)."""
    missing = [pkg for pkg, cmd in (("docker.io", "dockerd"), ("debootstrap", "debootstrap")) if not shutil.which(cmd)]
    if not missing:
        log("docker.io and debootstrap already installed")
        return 0
    return _apt_install(missing)


def test_deps(_args) -> int:
    """Install what only the tests and the generated docs need on this machine:
    PostgreSQL 15's server binaries (the modules' integration tests start
    throwaway clusters; the package creates none), openssl (the own-certificate
    test makes a CA), redis-tools (the connection guide's remote shell snippet),
    graphviz (the ER diagram) and chromium (the monitoring pages as a person sees
    them, tools/browser.py)."""
    wanted = (("openssl", "openssl"), ("redis-tools", "redis-cli"), ("graphviz", "dot"), ("chromium", "chromium"))
    missing = [pkg for pkg, cmd in wanted if not shutil.which(cmd)]
    if not PG_INITDB.exists():
        missing.append("postgresql-15")
        dropin = Path("/etc/postgresql-common/createcluster.d/50-no-main-cluster.conf")
        if os.geteuid() == 0:
            dropin.parent.mkdir(parents=True, exist_ok=True)
            dropin.write_text("create_main_cluster = false\n")
    if not missing:
        log("openssl, redis-tools, graphviz, chromium and postgresql-15 already installed")
        return 0
    return _apt_install(missing)


def docker_up(_args) -> int:
    if quiet(["docker", "info"]):
        log("docker engine already running")
        return 0
    STATE.mkdir(exist_ok=True)
    # A daemon that is still shutting down holds its pid file and makes a new
    # one exit at once: try again a few times before giving up.
    for attempt in range(1, 4):
        with open(STATE / "dockerd.log", "ab") as logfile:
            proc = subprocess.Popen(["dockerd"], stdout=logfile, stderr=subprocess.STDOUT, start_new_session=True)
        (STATE / "dockerd.pid").write_text(str(proc.pid))
        for _ in range(60):
            if quiet(["docker", "info"]):
                log(f"started dockerd (pid {proc.pid})")
                return 0
            if proc.poll() is not None:
                break
            time.sleep(1)
        log(f"dockerd exited (attempt {attempt}); see {STATE / 'dockerd.log'}")
        (STATE / "dockerd.pid").unlink(missing_ok=True)
        time.sleep(5)
    log("dockerd did not come up")
    return 1


def docker_down(_args) -> int:
    pidfile = STATE / "dockerd.pid"
    if not pidfile.exists():
        log("dockerd was not started by hostctl; leaving it alone")
        return 0
    pid = int(pidfile.read_text())
    try:
        os.kill(pid, 15)
        for _ in range(30):
            os.kill(pid, 0)
            time.sleep(1)
    except ProcessLookupError:
        pass
    pidfile.unlink()
    log(f"stopped dockerd (pid {pid})")
    return 0


def image_label() -> str | None:
    res = subprocess.run(
        ["docker", "image", "inspect", IMAGE, "--format", '{{ index .Config.Labels "chatflow.recipe" }}'],
        capture_output=True,
        text=True,
        check=False,
    )
    return res.stdout.strip() if res.returncode == 0 else None


def apt_mirror() -> str:
    sources = Path("/etc/apt/sources.list.d/debian.sources")
    if sources.exists():
        for line in sources.read_text().splitlines():
            if line.startswith("URIs:"):
                return line.split()[1]
    return "http://deb.debian.org/debian"


def build_image(args) -> int:
    want = recipe_hash()
    if not args.force and image_label() == want:
        log(f"image {IMAGE} is up to date (recipe {want})")
        return 0
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="chatflow-rootfs-") as tmp:
        rootfs = Path(tmp) / "rootfs"
        log(f"debootstrap {SUITE} into {rootfs}")
        run(
            ["debootstrap", "--variant=minbase", f"--include={','.join(INCLUDE)}", SUITE, str(rootfs), apt_mirror()],
            stdout=subprocess.DEVNULL,
        )
        sources = Path("/etc/apt/sources.list.d/debian.sources")
        if sources.exists():
            shutil.copy(sources, rootfs / "etc/apt/sources.list.d/debian.sources")
            (rootfs / "etc/apt/sources.list").unlink(missing_ok=True)
        # A container is not a console: no gettys, no udev settle waits.
        for unit in (
            "getty@tty1.service",
            "console-getty.service",
            "systemd-udev-trigger.service",
            "systemd-udevd.service",
        ):
            (rootfs / "etc/systemd/system" / unit).unlink(missing_ok=True)
            (rootfs / "etc/systemd/system" / unit).symlink_to("/dev/null")
        (rootfs / "etc/machine-id").write_text("")
        shutil.rmtree(rootfs / "var/cache/apt/archives", ignore_errors=True)
        (rootfs / "var/cache/apt/archives/partial").mkdir(parents=True)
        tar = subprocess.Popen(["tar", "-C", str(rootfs), "-c", "."], stdout=subprocess.PIPE)
        run(
            [
                "docker",
                "import",
                "--change",
                'CMD ["/lib/systemd/systemd"]',
                "--change",
                f"LABEL chatflow.recipe={want}",
                "-",
                IMAGE,
            ],
            stdin=tar.stdout,
            stdout=subprocess.DEVNULL,
        )
        tar.wait()
        if tar.returncode:
            log("tar of the rootfs failed")
            return 1
    log(f"built {IMAGE} in {time.monotonic() - started:.0f}s")
    return 0


def container_state(name: str) -> str | None:
    res = subprocess.run(
        ["docker", "inspect", "-f", "{{.State.Status}}", name], capture_output=True, text=True, check=False
    )
    return res.stdout.strip() if res.returncode == 0 else None


def wait_systemd(name: str, timeout: int = 60) -> bool:
    for _ in range(timeout):
        res = subprocess.run(
            ["docker", "exec", name, "systemctl", "is-system-running"], capture_output=True, text=True, check=False
        )
        if res.stdout.strip() in ("running", "degraded"):
            return True
        time.sleep(1)
    return False


def sandbox_up(_args) -> int:
    state = container_state(SANDBOX)
    if state == "running":
        log(f"container {SANDBOX} is running")
        return 0
    if state is not None:
        log(f"starting existing container {SANDBOX} ({state})")
        run(["docker", "start", SANDBOX], stdout=subprocess.DEVNULL)
    else:
        log(f"creating container {SANDBOX} from {IMAGE}")
        run(
            [
                "docker",
                "run",
                "-d",
                "--name",
                SANDBOX,
                "--hostname",
                SANDBOX,
                *SYSTEMD_RUN_OPTS,
                IMAGE,
                "/lib/systemd/systemd",
            ],
            stdout=subprocess.DEVNULL,
        )
    if not wait_systemd(SANDBOX):
        log("systemd in the sandbox did not reach running")
        return 1
    return 0


def sandbox_down(_args) -> int:
    if container_state(SANDBOX) is None:
        log(f"no container {SANDBOX}")
        return 0
    run(["docker", "rm", "-f", "-v", SANDBOX], stdout=subprocess.DEVNULL)
    log(f"removed {SANDBOX}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    sub.add_parser("host-deps").set_defaults(func=host_deps)
    sub.add_parser("test-deps").set_defaults(func=test_deps)
    sub.add_parser("docker-up").set_defaults(func=docker_up)
    sub.add_parser("docker-down").set_defaults(func=docker_down)
    img = sub.add_parser("image")
    img.add_argument("--force", action="store_true", help="rebuild even when up to date")
    img.set_defaults(func=build_image)
    sub.add_parser("sandbox-up").set_defaults(func=sandbox_up)
    sub.add_parser("sandbox-down").set_defaults(func=sandbox_down)
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except subprocess.CalledProcessError as exc:
        log(f"command failed ({exc.returncode}): {' '.join(map(str, exc.cmd))}")
        return 1


if __name__ == "__main__":
    sys.exit(main())
