#!/usr/bin/env bash
# Create ./.venv (Python 3.11, pip + venv) and install dim with exactly the versions CI tests
# (requirements.lock as pip constraints; pyproject.toml only declares compatible ranges).
# Idempotent: reinstalls only when pyproject.toml or requirements.lock changed since the last install.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="$root/.venv"
py="${PYTHON:-python3.11}"
command -v "$py" >/dev/null 2>&1 || py=python3
if ! "$py" -c 'import sys; sys.exit(0 if sys.version_info[:2] == (3, 11) else 1)'; then
    echo "error: the lock file pins the versions tested on Python 3.11 ($py is $("$py" --version 2>&1));" \
         "set PYTHON=/path/to/python3.11, or install into your own environment with: pip install -e ." >&2
    exit 2
fi
[ -x "$venv/bin/python" ] || "$py" -m venv "$venv"
stamp="$venv/.dim-installed"
want="$(cat "$root/pyproject.toml" "$root/requirements.lock" | sha256sum | cut -d' ' -f1)"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
    "$venv/bin/pip" install --quiet --disable-pip-version-check -c "$root/requirements.lock" \
        -e "$root[${DIM_EXTRAS:-test}]"
    echo "$want" > "$stamp"
fi
