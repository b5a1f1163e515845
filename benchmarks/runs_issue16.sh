#!/usr/bin/env bash
# The long evaluation runs of issue 16, in the issue's order. Resumable: run the same command again
# after any interruption (finished shards are kept; models already trained are not retrained).
#
#   DIM_RUNS=/path/with/space bash benchmarks/runs_issue16.sh [STEP...]
#
# STEP: table1-cheap table1-aa madry bin-adaptive paper-objective table2 abs table1-rest abs-rest abs-paper
# (default: all, in that order).
# table1-rest runs the rest of the suite (the paper's 42 and the earlier adaptive attacks) on the four
# Table 1 models, which had to be retrained when the first 200-image run's store was lost.
# EXECUTOR=ray runs each evaluation's units on a local Ray cluster (one single-threaded worker per core).
# Each step writes its report into $DIM_RUNS/<run>/report/ at the end; copy it into
# benchmarks/results/ with scripts of its own (see the session notes).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
RUNS="${DIM_RUNS:-/tmp/dim-runs}"
MODELS="$RUNS/models"
PY="${PYTHON:-$root/.venv/bin/python}"
export DIM_NO_PROGRESS="${DIM_NO_PROGRESS:-1}"
mkdir -p "$MODELS"

dim() { "$PY" -m dim "$@"; }
ex() { echo "--executor ${EXECUTOR:-serial}"; }
# REUSE="RUN_DIR ..." copies those runs' identical finished shards (same model card, attack spec, seed, images),
# e.g. an earlier run and the donor runs of benchmarks/gpu_donor.sh
reuse() { local r; for r in ${REUSE:-}; do echo "--reuse $r"; done; }
log() { echo "[$(date -u +%H:%M:%S)] $*" >&2; }   # stderr: the model lists below are read from stdout

have() { [ -f "$MODELS/$1/card.json" ]; }
train_as() {   # train_as DIR NAME [--from BASE] [--model-set K=V...]: once; a killed training resumes from its state
  local out=$1 name=$2; shift 2
  have "$out" || { log "train $name -> $out"; dim train "$name" --out "$MODELS/$out" "$@" >&2; }
}
train() { train_as "$1" "$@"; }

SUITE=paper+adaptive+bpda-autoattack
# the attacks issue 16 adds, cheapest first; AutoAttack L1 and Square L1 (5,000 queries on every survivor) last
NEW_CHEAP=(--only "* BinFlip" --only "L0 PGD-L0 *" --only "L0 Sparse-RS" --only "L1 APGD-CE *"
           --only "L1 BPDA-APGD")
NEW_AA=(--only "L1 AutoAttack" --only "L1 Square")

table1_models() {
  train cnn; train bicnn --from "$MODELS/cnn"; train dim; train bidim --from "$MODELS/dim"
  echo "$MODELS/cnn" "$MODELS/bicnn" "$MODELS/dim" "$MODELS/bidim"
}

step_table1_cheap() {
  # shellcheck disable=SC2046
  dim evaluate $(table1_models | tail -1) --suite "$SUITE" --n 200 --run "$RUNS/table1-n200" --no-report $(reuse) $(ex) "${NEW_CHEAP[@]}" || log "evaluate exited $?"
}
step_table1_aa() {
  # shellcheck disable=SC2046
  dim evaluate $(table1_models | tail -1) --suite "$SUITE" --n 200 --run "$RUNS/table1-n200" --no-report $(reuse) $(ex) "${NEW_AA[@]}" || log "evaluate exited $?"
}
step_madry() {
  train madry
  dim evaluate "$MODELS/madry" --suite "$SUITE" --n 200 --run "$RUNS/table1-n200" --no-report $(ex) \
    "${NEW_CHEAP[@]}" "${NEW_AA[@]}"
}
step_bin_adaptive() {
  # the BPDA, score-based and black-box attacks at L2 and L-inf on biCNN and biDIM first (part of table1-rest):
  # the full adaptive worst case the quick preset is compared with
  # shellcheck disable=SC2046
  dim evaluate "$MODELS/bicnn" "$MODELS/bidim" --suite "$SUITE" --n 200 --run "$RUNS/table1-n200" --no-report \
    $(reuse) $(ex) --only "L* BPDA-*" --only "L* Score-MT" --only "L* Square" --only "L* PGD-CE 100x5" \
    --only "L* BinFlip" || log "evaluate exited $?"
}
step_paper_objective() {
  train dim_paper; train bidim_paper --from "$MODELS/dim_paper"
  dim evaluate "$MODELS/dim_paper" "$MODELS/bidim_paper" --suite "$SUITE" --n 200 \
    --run "$RUNS/paper-objective-n200" --no-report $(ex)
}
# Table 2's protocol: the paper's suite plus AutoAttack and Score-MT at L2 and L-inf (a filtered suite, so the run
# records exactly these attacks); table2-n200-protocol was first computed as table2-n200 (the paper suite, then the
# four adaptive attacks with --only, which left the rest of the adaptive suite reported as to do): --reuse copies it
TABLE2_SUITE='paper+adaptive:L2 AutoAttack,Linf AutoAttack,L2 Score-MT,Linf Score-MT'
step_table2() {
  train im; train single_im; train dn_single_im
  local old=()
  [ -f "$RUNS/table2-n200/results.sqlite" ] && old=(--reuse "$RUNS/table2-n200")
  dim evaluate "$MODELS/im" "$MODELS/single_im" "$MODELS/dn_single_im" --suite "$TABLE2_SUITE" --n 200 \
    --run "$RUNS/table2-n200-protocol" --no-report "${old[@]}" $(ex)
}

step_table1_rest() {
  train madry
  # shellcheck disable=SC2046
  dim evaluate $(table1_models | tail -1) "$MODELS/madry" --suite "$SUITE" --n 200 --run "$RUNS/table1-n200" \
    --no-report $(reuse) $(ex) || log "evaluate exited $?"
}

# ABS as in its first 50-image run (README, "ABS and biABS"): the adaptive suite in ABS's fast inference setting
# (1,000 latents, 10 steps; --from copies the weights, the card records the setting, the run keys them abs/biabs),
# shards of 25 so that both cores work on one model
ABS_FAST=(--model-set n_random=1000 --model-set n_steps=10)
abs_models() {
  train abs; train biabs --from "$MODELS/abs"
  train_as abs-fast abs --from "$MODELS/abs" "${ABS_FAST[@]}"
  train_as biabs-fast biabs --from "$MODELS/abs" "${ABS_FAST[@]}"
  echo "$MODELS/abs-fast" "$MODELS/biabs-fast"
}
step_abs() {
  # the new L1/L0 attacks on ABS and biABS, 50 images (run 4 of the issue)
  # shellcheck disable=SC2046
  dim evaluate $(abs_models) --suite adaptive --n 50 --batch-size 25 --run "$RUNS/abs-n50" --no-report $(ex) \
    "${NEW_CHEAP[@]}" "${NEW_AA[@]}" || log "evaluate exited $?"
}
step_abs_rest() {
  # the rest of the adaptive suite (L2 and L-inf: the first run's store was lost with the first Table 1 run's)
  # shellcheck disable=SC2046
  dim evaluate $(abs_models) --suite adaptive --n 50 --batch-size 25 --run "$RUNS/abs-n50" --no-report $(ex) \
    || log "evaluate exited $?"
}

step_abs_paper() {
  # beyond the issue: the paper's suite on ABS and biABS too (about as long again), so that their cards carry a
  # paper protocol beside the adaptive worst case like every other model's
  # shellcheck disable=SC2046
  dim evaluate $(abs_models) --suite paper+adaptive --n 50 --batch-size 25 --run "$RUNS/abs-n50" --no-report $(ex) \
    || log "evaluate exited $?"
}

steps=("$@")
[ ${#steps[@]} -gt 0 ] || steps=(table1-cheap table1-aa madry bin-adaptive paper-objective table2 abs table1-rest abs-rest
                                  abs-paper)
for s in "${steps[@]}"; do
  log "step $s"
  "step_${s//-/_}"
  log "step $s done"
done
