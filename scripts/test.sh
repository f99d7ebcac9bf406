#!/usr/bin/env bash
# Sets everything up on a fresh machine (both virtual environments, the datasets) and runs the
# whole test suite: the main suite in .venv (Python 3.11, torch; on one thread and on the default
# thread count) and the Lava suite in .venv-lava (Python 3.10, lava-nc, no torch).
# Usage: bash scripts/test.sh [extra pytest args]
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/install_data.sh
bash scripts/install_browser.sh
bash scripts/setup_lava.sh
# The main suite runs twice: on one thread (OpenMP, MKL, OpenBLAS), then with the default thread
# count, so that a test which depends on the summation order of a threaded BLAS fails here and not
# only on another machine. The Lava suite (integer arithmetic, exact) runs once. set -e stops at
# the first failing run with pytest's exit status.
echo "== main suite, 1 thread"
OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 .venv/bin/python -m pytest tests --ignore=tests/lava -q "$@"
echo "== main suite, default threads"
env -u OMP_NUM_THREADS -u MKL_NUM_THREADS -u OPENBLAS_NUM_THREADS .venv/bin/python -m pytest tests --ignore=tests/lava -q "$@"
echo "== Lava suite"
.venv-lava/bin/python -m pytest tests/lava -m lava -q -p no:cacheprovider "$@"
