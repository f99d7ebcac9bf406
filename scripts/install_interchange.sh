#!/usr/bin/env bash
# Installs the interchange packages into .venv: nir (NIR files), onnx + onnxruntime (ONNX files),
# and, for the tests' third-party consumers and producers, nirtorch and snnTorch. torch is pinned
# in the same command so that nirtorch's and snnTorch's unpinned torch requirement is met by the
# CPU wheel instead of pulling a CUDA build. (scripts/setup.sh installs the same through the
# package's test extra; this script is for an existing .venv.) Usage: scripts/install_interchange.sh
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
[ -x "$PY" ] || { echo "no .venv: run scripts/setup.sh first" >&2; exit 1; }
"$PY" -m pip install --quiet "torch==2.13.0" "nir>=1.0.8" "nirtorch>=2.6" "snntorch>=1.0" \
    "onnx>=1.16" "onnxruntime>=1.17"
"$PY" -c "import nir, nirtorch, snntorch, onnx, onnxruntime, torch; assert '+cpu' in torch.__version__ or not torch.cuda.is_available(); print('interchange packages:', nir.__version__, nirtorch.__version__, snntorch.__version__, onnx.__version__, onnxruntime.__version__, 'torch', torch.__version__)"
