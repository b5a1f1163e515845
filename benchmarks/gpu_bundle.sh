#!/usr/bin/env bash
# Prepare .gpu/ for benchmarks/gpu_check.sh on a machine without a package registry: the pure-Python
# dependencies at the versions of requirements.lock, unpacked (pyautoattack without its 44 MB example
# model), and MNIST from the data folder as .gz files. .gpu/ is not committed (.git/info/exclude).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
rm -rf .gpu/site .gpu/wheels .gpu/zip && mkdir -p .gpu/site .gpu/wheels .gpu/zip .gpu/data/mnist
pins=$(grep -iE '^(foolbox|eagerpy|pyautoattack|gitpython|gitdb|smmap)==' requirements.lock)
python3 -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform any -d .gpu/wheels $pins
for w in .gpu/wheels/*.whl; do unzip -q -o "$w" -d .gpu/site; done
rm -rf .gpu/site/pyautoattack/examples .gpu/wheels
# plotly (the report page's curves) is 64 MB unpacked, too much to carry: its wheel (10 MB) is imported as a zip
pins=$(grep -iE '^(plotly|narwhals)==' requirements.lock)
python3 -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform any -d .gpu/zip $pins
data="${DIM_DATA:-$HOME/.cache/dim}/mnist"
for f in "$data"/*-ubyte; do gzip -c "$f" > ".gpu/data/mnist/$(basename "$f").gz"; done
du -sh .gpu
