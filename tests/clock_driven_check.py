"""Run by tests/test_spikingjelly.py in a subprocess: ``python clock_driven_check.py SJ012_DIR``.

Puts spikingjelly 0.0.0.0.12 (``SJ012_DIR``) first on sys.path, builds the ``clock_driven`` corpus
(tests/corpus_clock_driven.py) with its neurons on the 'cupy' backend as trained, traces,
compiles for loihi2, compares with the model's own forward (float64) and prints one JSON line.
"""
from __future__ import annotations

import json
import sys
import warnings
from pathlib import Path

sys.path.insert(0, sys.argv[1])
sys.path.insert(1, str(Path(__file__).parent))
warnings.filterwarnings("ignore")

import numpy as np  # noqa: E402
import torch  # noqa: E402

import corpus_clock_driven as C  # noqa: E402
import spikingjelly  # noqa: E402
from spikec import interp  # noqa: E402
from spikec.frontends.torch import input_op, trace  # noqa: E402
from spikec.models.activity import batchnorm_from_batch  # noqa: E402
from spikec.pipeline import compile_graph  # noqa: E402
from spikec.sim import simulate  # noqa: E402

if not spikingjelly.__file__.startswith(sys.argv[1]):
    raise SystemExit(f"spikingjelly imported from {spikingjelly.__file__}, not {sys.argv[1]}")

MODELS = {
    "spikformer": lambda: C.ClockDrivenSpikformer(T=2),
    "spikformer_plif": lambda: C.ClockDrivenSpikformer(T=2, plif=True),
    "single_step_containers": lambda: C.SingleStepContainerNet(T=2),
}


def check(make) -> dict:
    torch.manual_seed(0)
    raw = np.random.default_rng(0).integers(0, 256, (16, 3, 16, 16), dtype=np.uint8)
    model = make()
    last = [m for m in model.modules() if isinstance(m, torch.nn.Linear)][-1]
    with torch.no_grad():
        last.weight.normal_(0.0, 1.0, generator=torch.Generator().manual_seed(3))
    x = torch.from_numpy(raw.astype(np.float32) / 255)
    batchnorm_from_batch(model, x, affine_seed=1)
    with torch.no_grad():  # centre the logits on the images: several classes predicted
        C.reset_net(model)
        last.bias -= model(x).mean(0)
        C.reset_net(model)
    C.as_trained(model)
    graph = trace(model, input_op((3, 16, 16), {}), timesteps=2)
    restored = all(m.backend == "cupy" for m in model.modules() if hasattr(m, "backend"))
    C.on_torch(model).double()
    C.reset_net(model)
    with torch.no_grad():
        ref = model(torch.from_numpy(raw.astype(np.float64) / 255)).numpy()
    ours = interp.run(graph, raw, dtype=np.float64).logits
    result = compile_graph(graph, "loihi2", calib=raw)
    folded = interp.run(result.folded, raw, dtype=np.float64).logits
    bits = simulate(result.fixed, raw).outputs["output"]
    return {"float_same_predictions": bool(np.array_equal(ours.argmax(1), ref.argmax(1))
                                           and np.array_equal(folded.argmax(1), ref.argmax(1))),
            "logit_error": float(np.abs(ours - ref).max()),
            "bit_exact_agreement": float(np.mean(bits.argmax(1) == folded.argmax(1))),
            "bit_exact_correlation": float(np.corrcoef(bits.ravel(), folded.ravel())[0, 1]),
            "classes": len(set(ref.argmax(1).tolist())), "backends_restored": restored,
            "ops": sorted({op.OPCODE for op in graph.ops})}


print(json.dumps({name: check(make) for name, make in MODELS.items()}))
