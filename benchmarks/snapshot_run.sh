#!/usr/bin/env bash
# Record a long run (finished or still going) under benchmarks/results/ so that it can be committed:
# NAME.json (seconds per attack per model, shards done/failed, complete or not) and NAME_report/ (report.md,
# metrics.json, Table 1/2 in Markdown, CSV and LaTeX, the model cards): the text of the report, rendered from
# the run's store; not the page or the PNG curves, which `dim report RUN` writes again from the same store.
# The report covers SUITE's attacks only (`dim report --suite`): a run whose suite grew after SUITE finished
# (the paper's attacks added to an adaptive run) is recorded as the protocol it completed.
#
#   bash benchmarks/snapshot_run.sh RUN NAME [SUITE] [N]
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
run=${1:?RUN directory}; name=${2:?NAME of the results}
py="${PYTHON:-$root/.venv/bin/python}"
export PYTHONPATH="$root/src${PYTHONPATH:+:$PYTHONPATH}" DIM_NO_PROGRESS=1
[ -f "$run/results.sqlite" ] || { echo "error: $run holds no results.sqlite" >&2; exit 2; }
suite="${3:-paper+adaptive+bpda-autoattack}"
"$py" "$root/benchmarks/bench_eval_suite.py" --snapshot --run "$run" --suite "$suite" --n "${4:-200}" --name "$name" \
    > /dev/null
dest="$root/benchmarks/results/${name}_report"
rendered="$(mktemp -d)"
trap 'rm -rf "$rendered"' EXIT
"$py" -m dim report "$run" --suite "$suite" --out "$rendered/report" > /dev/null
rm -rf "$dest.tmp" && mkdir -p "$dest.tmp"
cp "$rendered"/report/{report.md,metrics.json} "$dest.tmp/"
cp "$rendered"/report/table*.{md,csv,tex} "$dest.tmp/" 2>/dev/null || true
cp -r "$rendered/report/cards" "$dest.tmp/"
rm -rf "$dest" && mv "$dest.tmp" "$dest"
echo "$root/benchmarks/results/$name.json and $dest"
