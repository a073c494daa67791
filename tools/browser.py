"""What a person sees: pages of a container's loopback services rendered by headless Chromium.

The services listen on the container's loopback (the role's default), so the page is reached
through a forwarder: a local port whose every connection is relayed by `docker exec` to the port
inside the container.  Chromium (Debian's package, /usr/bin/chromium, installed by
`hostctl.py test-deps`) renders it with the flags this closed network needs, runs its scripts,
and gives the DOM it shows, or a screenshot.

    python3 -m tools.browser chatflow-sandbox 9090 '/classic/graph?...' --screenshot out.png
"""

from __future__ import annotations

import argparse
import contextlib
import socket
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

CHROMIUM = "/usr/bin/chromium"
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
    # The certificates are checked by the exporters' own tests; here the page is what matters.
    "--ignore-certificate-errors",
)
# Runs in the container (its python3): relays stdin/stdout to 127.0.0.1:<port>.
RELAY = """
import socket, sys, threading
conn = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
def upstream():
    while data := sys.stdin.buffer.read1(65536):
        conn.sendall(data)
    conn.shutdown(socket.SHUT_WR)
threading.Thread(target=upstream, daemon=True).start()
while data := conn.recv(65536):
    sys.stdout.buffer.write(data)
    sys.stdout.buffer.flush()
"""


def _pump(read, write, close) -> None:
    with contextlib.suppress(OSError, ValueError):
        while data := read(65536):
            write(data)
    with contextlib.suppress(OSError):
        close()


def _relay(client: socket.socket, container: str, port: int) -> None:
    """One connection: a `docker exec` that relays it to the port in the container."""
    proc = subprocess.Popen(
        ["docker", "exec", "-i", container, "python3", "-c", RELAY, str(port)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )

    def to_container(data: bytes) -> None:
        proc.stdin.write(data)
        proc.stdin.flush()

    up = threading.Thread(target=_pump, args=(client.recv, to_container, proc.stdin.close), daemon=True)
    up.start()
    _pump(proc.stdout.read1, client.sendall, lambda: client.shutdown(socket.SHUT_WR))
    proc.wait(timeout=30)
    client.close()


@contextlib.contextmanager
def forward(container: str, port: int) -> Iterator[int]:
    """A local port that reaches 127.0.0.1:<port> inside the container, while the block runs."""
    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(0.5)
    stop = threading.Event()

    def accept() -> None:
        while not stop.is_set():
            try:
                client, _addr = server.accept()
            except TimeoutError:
                continue
            threading.Thread(target=_relay, args=(client, container, port), daemon=True).start()

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield server.getsockname()[1]
    finally:
        stop.set()
        thread.join()
        server.close()


def chromium(url: str, *args: str, budget_ms: int = 10000) -> str:
    """Run headless Chromium on url with args; what it printed (an error says why it failed)."""
    with tempfile.TemporaryDirectory(prefix="chatflow-chromium-") as profile:
        cmd = [CHROMIUM, *FLAGS, f"--user-data-dir={profile}", f"--virtual-time-budget={budget_ms}", *args, url]
        done = subprocess.run(cmd, capture_output=True, text=True, check=False, timeout=120)
    if done.returncode != 0:
        raise RuntimeError(f"chromium failed ({done.returncode}) on {url}: {done.stderr.strip()[-1500:]}")
    return done.stdout


def render(url: str, screenshot: Path | None = None, size: str = "1400,900") -> str:
    """The DOM Chromium shows for url after its scripts ran; a PNG of the page too when asked."""
    if screenshot is not None:
        chromium(url, f"--screenshot={screenshot}", f"--window-size={size}")
        if not screenshot.exists():
            raise RuntimeError(f"chromium wrote no screenshot of {url}")
    return chromium(url, "--dump-dom", f"--window-size={size}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("container")
    parser.add_argument("port", type=int)
    parser.add_argument("path", help="the page's path and query, e.g. /classic/graph")
    parser.add_argument("--scheme", choices=("http", "https"), default="http")
    parser.add_argument("--screenshot", type=Path)
    args = parser.parse_args(argv)
    with forward(args.container, args.port) as local:
        dom = render(f"{args.scheme}://127.0.0.1:{local}{args.path}", args.screenshot)
    print(dom)
    return 0


if __name__ == "__main__":
    sys.exit(main())
