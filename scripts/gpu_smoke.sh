#!/usr/bin/env bash
# The GPU smoke check (see scripts/gpu_smoke.py). Uses .venv when it is there (make install).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=python3
[[ -x .venv/bin/python ]] && PY=.venv/bin/python
exec "$PY" scripts/gpu_smoke.py "$@"
