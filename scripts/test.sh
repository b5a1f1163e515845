#!/usr/bin/env bash
# Install dim and its test dependencies into ./.venv, install Debian's chromium for the browser tests of the
# HTML report (if it is missing), then lint and run the whole test suite.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$root/scripts/bootstrap.sh"
if ! command -v chromium >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1; then
    echo "installing Debian's chromium package (the HTML report's tests open the page in it)" >&2
    sudo=""; [ "$(id -u)" = 0 ] || sudo="sudo"
    export DEBIAN_FRONTEND=noninteractive
    $sudo apt-get install -y -q chromium >/dev/null || { $sudo apt-get update -q >/dev/null && $sudo apt-get install -y -q chromium >/dev/null; }
fi
cd "$root"
"$root/.venv/bin/ruff" check --quiet src tests benchmarks   # pyflakes and syntax errors (pyproject's [tool.ruff])
# one worker per core; tests that share a Ray cluster or a trained model stay on one (tests/conftest.py)
exec "$root/.venv/bin/python" -m pytest -q -n auto "$@"
