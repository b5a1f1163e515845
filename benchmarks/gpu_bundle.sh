#!/usr/bin/env bash
# Prepare .gpu/ for benchmarks/gpu_check.sh on a machine without a package registry: the pure-Python
# dependencies at the versions of requirements.lock, unpacked (pyautoattack without its 44 MB example
# model), and the datasets of DATASETS (default: mnist) from the data folder as .gz files. With
# GPU_MODELS="cnn dim" and GPU_MODELS_DIR, those trained models (weights and card) go to .gpu/models for
# benchmarks/gpu_donor.sh. .gpu/ is not committed (.git/info/exclude); all of it travels (64 MiB at most).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
rm -rf .gpu/site .gpu/wheels .gpu/zip .gpu/data .gpu/models && mkdir -p .gpu/site .gpu/wheels .gpu/zip
pins=$(grep -iE '^(foolbox|eagerpy|pyautoattack|gitpython|gitdb|smmap)==' requirements.lock)
python3 -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform any -d .gpu/wheels $pins
for w in .gpu/wheels/*.whl; do unzip -q -o "$w" -d .gpu/site; done
rm -rf .gpu/site/pyautoattack/examples .gpu/wheels
# plotly (the report page's curves) is 64 MB unpacked, too much to carry: its wheel (10 MB) is imported as a zip;
# WITH_PLOTLY=0 leaves it out (gpu_donor.sh writes no report)
if [ "${WITH_PLOTLY:-1}" = 1 ]; then
  pins=$(grep -iE '^(plotly|narwhals)==' requirements.lock)
  python3 -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
      --platform any -d .gpu/zip $pins
fi
for ds in ${DATASETS:-mnist}; do
  mkdir -p ".gpu/data/$ds"
  for f in "${DIM_DATA:-$HOME/.cache/dim}/$ds"/*-ubyte; do gzip -c "$f" > ".gpu/data/$ds/$(basename "$f").gz"; done
done
for m in ${GPU_MODELS:-}; do
  mkdir -p ".gpu/models/$m" && cp "${GPU_MODELS_DIR:?GPU_MODELS_DIR: where the trained models are}/$m/"{card.json,model.safetensors} ".gpu/models/$m/"
done
du -sh .gpu
