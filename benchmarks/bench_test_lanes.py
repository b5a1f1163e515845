"""Wall time of the test lanes: the fast lane (``pytest -m "not slow"``) a developer runs while working, or every
test (what CI runs).

    python benchmarks/bench_test_lanes.py --lane fast
    python benchmarks/bench_test_lanes.py --lane all --note "what else ran meanwhile"

Writes ``results/test_lanes_<lane>.json`` with the wall seconds, pytest's summary line and the exit status.
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

from common import write_result

ROOT = Path(__file__).resolve().parent.parent
LANES = {"fast": ["-m", "not slow"], "all": []}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--lane", choices=sorted(LANES), default="fast")
    ap.add_argument("--note", default=None, help="what else ran on the machine meanwhile (recorded as given)")
    args = ap.parse_args()
    t0 = time.perf_counter()
    r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *LANES[args.lane]],
                       cwd=ROOT, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    summary = [line for line in r.stdout.splitlines() if " passed" in line or " failed" in line][-1:]
    write_result(f"test_lanes_{args.lane}", {"lane": args.lane, "wall_seconds": round(wall, 1),
                                             "summary": summary[0] if summary else None, "returncode": r.returncode,
                                             "note": args.note})
    sys.exit(r.returncode)


if __name__ == "__main__":
    main()
