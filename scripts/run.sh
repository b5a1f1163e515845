#!/usr/bin/env bash
# The main job: install dim into ./.venv, fetch MNIST, train DIM and the CNN (biDIM and biCNN reuse
# their weights), attack all four with the quick suite on 200 test images, write the report.
# Models go to ./models/, results and report to ./runs/quick/. Rerun: finished work is kept.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$root/scripts/bootstrap.sh"
cd "$root"
exec "$root/.venv/bin/dim" reproduce --preset quick --run runs/quick --models-dir models
