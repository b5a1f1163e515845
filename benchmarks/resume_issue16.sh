#!/usr/bin/env bash
# Resume the long runs of issue 16 in the background (a session's end stops them; finished shards are kept).
#
#   bash benchmarks/resume_issue16.sh [STEP...]      (default steps: table1-rest abs abs-rest abs-paper)
#
# The runs execute from a git worktree of the current commit ($DIM_RUNS/code), so that every store records a
# real commit and editing this checkout never changes code under a running evaluation. Refused while a chain
# is running. Progress: .venv/bin/dim status $DIM_RUNS/<run>; log: $DIM_RUNS/log.txt.
# Stop: pkill -f runs_issue16.sh; pkill -TERM -f "python -m dim"
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
runs="${DIM_RUNS:-/tmp/dim-runs}"
if pgrep -f "benchmarks/runs_issue16.sh" >/dev/null; then
  echo "error: a chain is running already (pgrep -af runs_issue16.sh); stop it first" >&2
  exit 2
fi
mkdir -p "$runs"
git -C "$root" worktree prune
[ -d "$runs/code" ] || git -C "$root" worktree add --detach "$runs/code" HEAD >/dev/null
git -C "$runs/code" checkout -q --detach "$(git -C "$root" rev-parse HEAD)"
[ $# -gt 0 ] || set -- table1-rest abs abs-rest abs-paper
cd "$runs"
PYTHONPATH="$runs/code/src" PYTHON="${PYTHON:-$root/.venv/bin/python}" DIM_RUNS="$runs" \
  REUSE="${REUSE-$runs/table1-n200-v0}" EXECUTOR="${EXECUTOR:-ray}" \
  nohup nice -n 10 bash "$runs/code/benchmarks/runs_issue16.sh" "$@" >> "$runs/log.txt" 2>&1 &
echo "started: $* (pid $!, code at $(git -C "$runs/code" rev-parse --short HEAD)); log $runs/log.txt"
