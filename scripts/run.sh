#!/usr/bin/env bash
# The main job: install dim into ./.venv, fetch MNIST, train DIM, derive biDIM from its weights.
# Model directories go to ./models/; run again and finished models are kept.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$root/scripts/bootstrap.sh"
cd "$root"
dim="$root/.venv/bin/dim"
"$dim" data fetch
[ -f models/dim/card.json ] || "$dim" train dim --out models/dim
[ -f models/bidim/card.json ] || "$dim" train bidim --from models/dim --out models/bidim
for m in dim bidim; do "$dim" info "models/$m" | grep -E '"(model|clean_accuracy|train_seconds)"'; done
