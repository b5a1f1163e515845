#!/usr/bin/env bash
# The GPU checks as one script: the test suite with DIM_DEVICE=cuda, then bench_device.py.
#
# Written for a GPU machine that has Python, a CUDA build of torch, pytest and the compiled dependencies
# but no package registry: the pure-Python dependencies it lacks (foolbox, eagerpy, pyautoattack, GitPython)
# are unpacked into .gpu/site and MNIST is carried as .gz files in .gpu/data/mnist (prepare both with
# benchmarks/gpu_bundle.sh). On any other machine with dim installed it runs as it is:
#     DEVICE=cpu AA_N=100 bash benchmarks/gpu_check.sh
# STEPS=none runs the tests only; STEPS=train,inference a subset of bench_device.py's steps.
# Results go to $OUT (default .gpu/out): env.txt, tests.log, tests.xml, bench.log, device_<label>.json.
set -uo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
out="${OUT:-$root/.gpu/out}"
mkdir -p "$out"
device="${DEVICE:-cuda}"
label="${LABEL:-$device}"
py="${PYTHON:-python3}"
[ -d .gpu/site ] && export PYTHONPATH="$root/src:$root/.gpu/site${PYTHONPATH:+:$PYTHONPATH}"
for w in "$root"/.gpu/zip/*.whl; do [ -f "$w" ] && export PYTHONPATH="$PYTHONPATH:$w"; done
[ -d .gpu/data/mnist ] && export DIM_DATA="${DIM_DATA:-$root/.gpu/data}"
export GIT_PYTHON_REFRESH=quiet DIM_NO_PROGRESS=1 PYTHONUNBUFFERED=1 DIM_DEVICE="$device"

{ date -u; nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>&1 || true
  "$py" -c 'import sys, torch, numpy, foolbox, eagerpy, pyautoattack, numba, scipy, safetensors, typer, rich
print(sys.version); print("torch", torch.__version__, "cuda", torch.version.cuda, "available", torch.cuda.is_available())
print("numpy", numpy.__version__, "foolbox", foolbox.__version__, "numba", numba.__version__, "scipy", scipy.__version__,
      "safetensors", safetensors.__version__)
import importlib.metadata as m; print("typer", m.version("typer"), "rich", m.version("rich"), "pytest", m.version("pytest"))'
} 2>&1 | tee "$out/env.txt"

workers=""
"$py" -c 'import xdist' 2>/dev/null && workers="-n ${WORKERS:-8}"
timeout "${TEST_TIMEOUT:-300}" "$py" -m pytest -q -p no:cacheprovider $workers --junitxml="$out/tests.xml" tests \
    2>&1 | tee "$out/tests.log" | tail -40
echo "tests exit: ${PIPESTATUS[0]}"

[ "${STEPS:-}" = none ] && exit 0
timeout "${BENCH_TIMEOUT:-420}" "$py" benchmarks/bench_device.py --device "$device" --label "$label" \
    --aa-n "${AA_N:-1000}" ${EPOCHS:+--epochs $EPOCHS} --steps "${STEPS:-train,inference,autoattack,quick,bpda-autoattack}" --out-dir "$out" \
    2>&1 | tee "$out/bench.log" | grep -v '^\s*$' | tail -80
echo "bench exit: ${PIPESTATUS[0]}"
