"""Wall time of the test lanes: the fast lane (``pytest -m "not slow"``) a developer runs while working, or every
test (what CI runs).

    python benchmarks/bench_test_lanes.py --lane fast
    python benchmarks/bench_test_lanes.py --lane all --note "what else ran meanwhile"
    python benchmarks/bench_test_lanes.py --lane all --workers 0     # in one process, as before pytest-xdist

Both lanes run in pytest-xdist workers, one per core (``-n auto``, as scripts/test.sh does; pyproject's addopts
keep the tests that share a Ray cluster or a trained model on one worker);
``--workers`` sets their number, 0 for none.

Writes ``results/test_lanes_<lane>.json`` with the wall seconds, pytest's summary line, the exit status and the
slowest tests (setup, call and teardown together: a session fixture's training counts for the first test that
asks for it).
"""
from __future__ import annotations

import argparse
import re
import subprocess
import sys
import time
from pathlib import Path

from common import write_result

ROOT = Path(__file__).resolve().parent.parent
LANES = {"fast": ["-m", "not slow"], "all": []}
DURATION = re.compile(r"^([0-9.]+)s (setup|call|teardown)\s+(\S+)")


def slowest(stdout: str, top: int = 40) -> list[list]:
    """``[[test id, seconds], ...]`` of the ``top`` slowest tests in pytest's ``--durations=0`` report."""
    per_test: dict[str, float] = {}
    for line in stdout.splitlines():
        m = DURATION.match(line.strip())
        if m:
            per_test[m.group(3)] = per_test.get(m.group(3), 0.0) + float(m.group(1))
    return [[k, round(v, 2)] for k, v in sorted(per_test.items(), key=lambda kv: -kv[1])[:top]]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--lane", choices=sorted(LANES), default="fast")
    ap.add_argument("--note", default=None, help="what else ran on the machine meanwhile (recorded as given)")
    ap.add_argument("--workers", default="auto", help="pytest-xdist workers: auto (one per core), a number, 0 for none")
    ap.add_argument("--out", default=None, help="result name (default test_lanes_<lane>)")
    args = ap.parse_args()
    t0 = time.perf_counter()
    r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--durations=0",
                        "-n", args.workers, *LANES[args.lane]],
                       cwd=ROOT, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    summary = [line for line in r.stdout.splitlines() if " passed" in line or " failed" in line][-1:]
    write_result(args.out or f"test_lanes_{args.lane}",
                 {"lane": args.lane, "workers": args.workers, "wall_seconds": round(wall, 1),
                  "summary": summary[0] if summary else None, "returncode": r.returncode, "note": args.note,
                  "slowest_tests": slowest(r.stdout)})
    sys.exit(r.returncode)


if __name__ == "__main__":
    main()
