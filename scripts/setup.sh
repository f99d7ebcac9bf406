#!/usr/bin/env bash
# Creates .venv (Python 3.11) with the CPU build of torch and spikec installed editable with its
# test extras. Idempotent: a second run only re-checks. Usage: scripts/setup.sh
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${SPIKEC_PYTHON:-$(command -v python3.11 || command -v python3)}
if [ ! -x .venv/bin/python ]; then
    "$PY" -m venv .venv
fi
. .venv/bin/activate
python -m pip install --quiet --upgrade pip >/dev/null 2>&1 || true
# torch is pinned here: an unpinned torch pulls a multi-GB CUDA build; 2.13.0 is the CPU wheel on disk.
python -m pip install --quiet "torch==2.13.0"
python -m pip install --quiet -e ".[test,data,interchange]"
