#!/usr/bin/env bash
# Creates .venv-lava: Python 3.10 with lava-nc 0.10.0 (Intel's Loihi 2 bit-accurate CPU models),
# numpy<2, pytest, and spikec's core installed editable without torch. lava-nc does not import on
# Python 3.11+, hence this second environment (see docs/target-arithmetic.md).
#
# Python 3.10 is looked up in this order: python3.10 on PATH, pyenv's /root/.pyenv/versions/3.10.*,
# then $SPIKEC_LAVA_PYTHON. Idempotent: a second run only re-checks the imports.
# Usage: scripts/setup_lava.sh        Then: .venv-lava/bin/python -m pytest tests/lava -m lava
set -euo pipefail
cd "$(dirname "$0")/.."

is_py310() { [ -n "$1" ] && [ -x "$1" ] && "$1" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 10))' 2>/dev/null; }

find_python310() {
    local candidate
    candidate=$(command -v python3.10 || true)
    if is_py310 "$candidate"; then echo "$candidate"; return 0; fi
    for candidate in /root/.pyenv/versions/3.10.*/bin/python; do
        if is_py310 "$candidate"; then echo "$candidate"; return 0; fi
    done
    if is_py310 "${SPIKEC_LAVA_PYTHON:-}"; then echo "$SPIKEC_LAVA_PYTHON"; return 0; fi
    return 1
}

VENV=.venv-lava
if ! is_py310 "$VENV/bin/python"; then
    if ! PY=$(find_python310); then
        echo "setup_lava.sh: no Python 3.10 found (tried python3.10 on PATH, /root/.pyenv/versions/3.10.*, \$SPIKEC_LAVA_PYTHON); install Python 3.10 or set SPIKEC_LAVA_PYTHON to its interpreter" >&2
        exit 2
    fi
    rm -rf "$VENV"
    "$PY" -m venv "$VENV"
fi
LPY="$VENV/bin/python"

# Each install step runs only when its check fails, so a second run does no network work.
if ! "$LPY" -c 'import importlib.metadata as m; assert m.version("lava-nc") == "0.10.0"; import numpy; assert int(numpy.__version__.split(".")[0]) < 2; import pytest' 2>/dev/null; then
    "$LPY" -m pip install --quiet --upgrade pip >/dev/null 2>&1 || true
    "$LPY" -m pip install --quiet "lava-nc==0.10.0" "numpy<2" "pytest>=7"
fi
if ! "$LPY" -c 'import spikec, os, sys; sys.exit(not os.path.samefile(os.path.dirname(spikec.__file__), "spikec"))' 2>/dev/null; then
    # spikec's core only: no torch. The core deps are listed by hand because --no-deps skips them.
    "$LPY" -m pip install --quiet "numpy<2" "networkx>=3.0" "click>=8.1" "tomli>=2.0"
    "$LPY" -m pip install --quiet --no-deps -e .
fi

"$LPY" - <<'EOF'
import sys
import lava
from lava.magma.core.run_configs import Loihi2SimCfg  # noqa: F401
from lava.proc.lif.process import LIF  # noqa: F401
import spikec.ir
import spikec.target
import importlib.metadata as md
print(f"setup_lava.sh: ok: Python {sys.version.split()[0]}, lava-nc {md.version('lava-nc')}, "
      f"numpy {md.version('numpy')}, spikec core imports (no torch)")
EOF
