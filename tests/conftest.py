"""Shared helpers for the torch frontend / interpreter tests: give random models realistic batch
norms, run a torch model while recording every neuron's spikes, compare with the interpreter."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest


def calibrate_batchnorm(model, x, seed: int = 1) -> None:
    """Random BN affine parameters and running statistics measured on ``x``, so that every LIF
    layer fires at a useful rate; leaves ``model`` in eval."""
    from spikec.models.activity import batchnorm_from_batch

    batchnorm_from_batch(model, x, affine_seed=seed)


@dataclass
class Agreement:
    spike_mismatches: int
    spikes: int
    logit_rel_error: float
    same_predictions: bool
    neurons: int

    @property
    def mismatch_fraction(self) -> float:
        return self.spike_mismatches / max(self.spikes, 1)


def compare_with_torch(graph, model, raw: np.ndarray, *, dtype=np.float32,
                       neuron_types: tuple[type, ...] = ()) -> Agreement:
    """Run ``graph`` in the interpreter and ``model`` in torch (in ``dtype``) on ``raw`` images and
    compare logits and the spikes of every neuron module (matched to the LIF op of the same name;
    a module called k times matches ``name``, ``name_1``, ...)."""
    import torch

    from spikec import interp
    from spikec.frontends.torch.neurons import reader_for
    from spikec.interp import preprocess
    from spikec.ir import ops as O
    from spikec.models.activity import reset_neurons

    inp = graph.inputs[0]
    x = torch.from_numpy(preprocess(inp, raw, dtype))
    calls: dict[str, list[np.ndarray]] = {}
    hooks = []
    for path, m in model.named_modules():
        if reader_for(m) is not None or isinstance(m, neuron_types):
            hooks.append(m.register_forward_hook(
                lambda mod, a, out, p=path: calls.setdefault(p, []).append(out.detach().numpy())))
    torch_model = model.double() if dtype == np.float64 else model
    reset_neurons(torch_model)
    try:
        with torch.no_grad():
            ref = torch_model(x)
    finally:
        for h in hooks:
            h.remove()
        model.float()
    ref = ref.numpy()
    if ref.ndim == 3:  # per-step outputs [T, B, classes]
        ref = ref.mean(axis=0)
    trace = interp.run(graph, raw, dtype=dtype, record="all")
    lifs = {op.name for op in graph.ops if isinstance(op, O.LIF)}
    bad = total = 0
    for path, outs in calls.items():
        for k, got in enumerate(outs):  # the k-th call of a module is LIF op path, path_1, ...
            name = path if k == 0 else f"{path}_{k}"
            assert name in lifs, f"neuron call {name} has no LIF op"
            ours = trace.values[name]
            assert got.shape == ours.shape, name
            bad += int(np.count_nonzero(got != ours))
            total += ours.size
    assert sum(len(v) for v in calls.values()) == len(lifs), "a LIF op matches no neuron call"
    err = float(np.abs(trace.logits - ref).max() / max(np.abs(ref).max(), 1e-30))
    same = bool(np.array_equal(trace.logits.argmax(axis=1), ref.argmax(axis=1)))
    return Agreement(bad, total, err, same, len(lifs))


@pytest.fixture
def images():
    """``images(shape, n=4, seed=0)``: random uint8 images [n, *shape]."""
    def make(shape, n: int = 4, seed: int = 0) -> np.ndarray:
        return np.random.default_rng(seed).integers(0, 256, size=(n,) + tuple(shape), dtype=np.uint8)
    return make


@pytest.fixture
def calibrate():
    return calibrate_batchnorm


@pytest.fixture
def agreement():
    return compare_with_torch
