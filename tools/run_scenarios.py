"""Run the molecule scenarios in parallel lanes: `make molecule` (see MOLECULE_LANES in the Makefile).

Each argument is a lane, its scenarios joined by commas, run one after the other; the lanes run
at the same time.  A scenario spends most of its time waiting on its container (one `docker
exec` and one module start per task), so two lanes use the machine's two cores where one lane
leaves most of a core idle.  Every line is printed with its scenario's name; each scenario's
time is printed when it ends.  A failed scenario stops its lane (the other lanes finish what
they started and start nothing new) and the run exits non-zero, naming it.

    python3 tools/run_scenarios.py reliability,migrations default,security
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import threading
import time

PRINT = threading.Lock()


def say(line: str) -> None:
    with PRINT:
        print(line, flush=True)


def run_scenario(scenario: str) -> bool:
    """molecule test -s scenario, its output prefixed; True when it passed."""
    start = time.monotonic()
    proc = subprocess.Popen(
        ["molecule", "test", "-s", scenario],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        bufsize=1,
    )
    assert proc.stdout is not None
    for line in proc.stdout:
        say(f"[{scenario}] {line.rstrip()}")
    ok = proc.wait() == 0
    say(f"== scenario {scenario} {'took' if ok else 'FAILED after'} {time.monotonic() - start:.0f}s")
    return ok


def run_lanes(lanes: list[list[str]]) -> list[str]:
    """Run the lanes side by side; return the scenarios that failed."""
    failed: list[str] = []
    stop = threading.Event()

    def lane(scenarios: list[str]) -> None:
        for scenario in scenarios:
            if stop.is_set():
                say(f"== scenario {scenario} not started: {', '.join(failed)} failed")
                return
            if not run_scenario(scenario):
                failed.append(scenario)
                stop.set()
                return

    threads = [threading.Thread(target=lane, args=(scenarios,)) for scenarios in lanes]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return failed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("lanes", nargs="+", help="scenarios of one lane, joined by commas")
    args = parser.parse_args(argv)
    lanes = [[s for s in lane.split(",") if s] for lane in args.lanes]
    start = time.monotonic()
    failed = run_lanes(lanes)
    say(f"== molecule: {len(lanes)} lane(s) took {time.monotonic() - start:.0f}s")
    if failed:
        say(f"== molecule FAILED: {', '.join(failed)}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
