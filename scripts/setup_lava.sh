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

# pip's own output goes to a log that is shown only when a step fails.
quiet() {
    local log
    log=$(mktemp)
    if ! "$@" >"$log" 2>&1; then
        cat "$log" >&2
        rm -f "$log"
        echo "setup_lava.sh: failed: $*" >&2
        exit 1
    fi
    rm -f "$log"
}

# lava-nc 0.10.0 pins networkx<=2.8.7; spikec's core only builds a networkx.DiGraph, which 2.8 has.
LAVA_DEPS=("lava-nc==0.10.0" "numpy<2" "networkx<=2.8.7" "pytest>=7")
# Each install step runs only when its check fails, so a second run does no network work.
if ! "$LPY" -I -c 'import importlib.metadata as m, sys
ok = m.version("lava-nc") == "0.10.0" and int(m.version("numpy").split(".")[0]) < 2
ok = ok and int(m.version("networkx").split(".")[0]) < 3
import pytest
sys.exit(not ok)' 2>/dev/null; then
    quiet "$LPY" -m pip install --upgrade pip
    quiet "$LPY" -m pip install "${LAVA_DEPS[@]}"
fi
# -I: without the current directory on sys.path, so the check sees the installed (editable) spikec.
if ! "$LPY" -I -c 'import spikec, os, sys; sys.exit(not os.path.samefile(os.path.dirname(spikec.__file__), sys.argv[1]))' "$PWD/spikec" 2>/dev/null; then
    # spikec's core only: no torch. The core deps are listed by hand because --no-deps skips them.
    quiet "$LPY" -m pip install "${LAVA_DEPS[@]}" "click>=8.1" "tomli>=2.0"
    quiet "$LPY" -m pip install --no-deps -e .
fi

"$LPY" -I - <<'EOF'
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
