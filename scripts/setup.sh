#!/usr/bin/env bash
# Create .venv and install the project from its own lock files.
# Re-running when nothing changed takes well under a second: a stamp records what was installed.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3.11}
command -v "$PYTHON" >/dev/null 2>&1 || PYTHON=python3
"$PYTHON" - <<'PY' || { echo "setup: Python 3.11 is required (found $("$PYTHON" --version 2>&1)); set PYTHON=/path/to/python3.11" >&2; exit 1; }
import sys; sys.exit(0 if sys.version_info[:2] == (3, 11) else 1)
PY

stamp=.venv/.ppml-torch-installed
want=$(cat requirements/torch.txt requirements/lock.txt pyproject.toml | sha256sum | cut -d' ' -f1)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
    exit 0
fi

[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
pip=(.venv/bin/python -m pip --disable-pip-version-check -q)
# 1. torch by its pin, WITH its dependencies, so pip picks the build that fits this machine.
"${pip[@]}" install -r requirements/torch.txt
# 2. everything else from the full lock, without dependency resolution: no SecretFlow release
#    resolves through pip any more (its pins name unpublished packages).  This also puts
#    torch's dependencies back on the lock's versions (setuptools<70 for ray).
"${pip[@]}" install --no-deps -r requirements/lock.txt
# 3. the project itself, editable.
"${pip[@]}" install --no-deps --no-build-isolation -e .
echo "$want" > "$stamp"
echo "setup: .venv ready ($(.venv/bin/python -c 'import torch, jax, spu; print(f"torch {torch.__version__}, jax {jax.__version__}, spu {spu.__version__}")'))"
