#!/usr/bin/env bash
# Run the costly part of a long evaluation on a lent GPU machine as *donor* runs, whose finished shards a run
# on this machine then copies with `--reuse` (re-verified on its own model, so a GPU's float differences can
# only make a shard run again here, never change a number unchecked).
#
# Here, once:   GPU_MODELS_DIR=/tmp/dim-runs/models GPU_MODELS="bicnn bidim" WITH_PLOTLY=0 \
#                   bash benchmarks/gpu_bundle.sh
# There:        device run, carry [".gpu"], command:  LIMIT=500 bash benchmarks/gpu_donor.sh
#               (one `dim evaluate --device cuda` per model, side by side, each stopped after LIMIT seconds;
#               every shard committed before the stop is kept)
# Here, after:  for t in FILES_AT/donor-*.tar.gz; do tar xzf "$t" -C /tmp/dim-runs; done
#               REUSE="/tmp/dim-runs/table1-n200-v0 /tmp/dim-runs/gpu-bicnn /tmp/dim-runs/gpu-bidim" \
#                   bash benchmarks/runs_issue16.sh table1-rest
#
# SUITE, N, SEED and BATCH_SIZE must equal the run that will reuse the shards (defaults: the issue-16 runs).
# ONLY: the attacks to run there, one shell pattern per line (default: the slowest attacks of that suite;
# Brendel-Bethge is left out: it is copied only from a donor that ran every attack of its norm before it). Sanity checks run where the run itself runs.
set -uo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
out="${OUT:-$root/.gpu/out}"
mkdir -p "$out" .gpu/donors
py="${PYTHON:-python3}"
[ -d .gpu/site ] && export PYTHONPATH="$root/src:$root/.gpu/site${PYTHONPATH:+:$PYTHONPATH}"
[ -d .gpu/data/mnist ] && export DIM_DATA="${DIM_DATA:-$root/.gpu/data}"
export GIT_PYTHON_REFRESH=quiet DIM_NO_PROGRESS=1 PYTHONUNBUFFERED=1
default_only='* AutoAttack
* BPDA-AutoAttack
* Square
* HopSkipJump
* GenAttack
L0 Pointwise*
L2 Boundary
* CarliniWagner
* PGD-CE 100x5
* BPDA-PGD 100x5
* Score-MT'
only=()
while IFS= read -r pattern; do [ -n "$pattern" ] && only+=(--only "$pattern"); done <<< "${ONLY:-$default_only}"

nvidia-smi --query-gpu=name,memory.total --format=csv,noheader 2>&1 | tee "$out/env.txt"
pids=()
for dir in .gpu/models/*/; do
  name=$(basename "$dir")
  timeout -k 15 -s TERM "${LIMIT:-480}" "$py" -m dim evaluate "$dir" --device "${DEVICE:-cuda}" \
      --suite "${SUITE:-paper+adaptive+bpda-autoattack}" --n "${N:-200}" --seed "${SEED:-0}" \
      --batch-size "${BATCH_SIZE:-100}" --run ".gpu/donors/gpu-$name" --no-report --no-checks "${only[@]}" \
      > "$out/evaluate-$name.log" 2>&1 &
  pids+=($!)
done
for p in "${pids[@]}"; do wait "$p"; done
for d in .gpu/donors/gpu-*/; do
  name=$(basename "$d")
  "$py" -m dim status "$d" 2>&1 | head -3 | tee -a "$out/status.txt"
  tar czf "$out/donor-${name#gpu-}.tar.gz" -C .gpu/donors "$name"
done
ls -la "$out"
