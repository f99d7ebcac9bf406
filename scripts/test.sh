#!/usr/bin/env bash
# Sets everything up on a fresh machine (both virtual environments, the datasets) and runs the
# whole test suite: the main suite in .venv (Python 3.11, torch) and the Lava suite in .venv-lava
# (Python 3.10, lava-nc, no torch). Usage: bash scripts/test.sh [extra pytest args]
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/install_data.sh
bash scripts/install_browser.sh
bash scripts/setup_lava.sh
.venv/bin/python -m pytest tests --ignore=tests/lava -q "$@"
.venv-lava/bin/python -m pytest tests/lava -m lava -q -p no:cacheprovider "$@"
