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
# torch is named again beside the extras so that packages with an unpinned torch (nirtorch,
# snnTorch) see it satisfied by the CPU wheel instead of resolving a CUDA build.
python -m pip install --quiet "torch==2.13.0" -e ".[test,data,interchange,sanafe,cluster]"
# spikingjelly 0.0.0.0.12 (the clock_driven API the official Spikformer/SDT/QKFormer code imports) cannot
# share site-packages with 2.0 (the test extra): its own folder, put first on sys.path by the tests
# that use it (tests/test_spikingjelly.py runs them in a subprocess). No dependencies: torch is here.
if [ ! -d .venv/sj012/spikingjelly ]; then
    python -m pip install --quiet --no-deps --target .venv/sj012 "spikingjelly==0.0.0.0.12"
fi
