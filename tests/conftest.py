"""Shared helpers for the torch frontend / interpreter tests: give random models realistic batch
norms, run a torch model while recording every neuron's spikes, compare with the interpreter."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest

from floatcheck import Flips, assert_close_where_unflipped, check_spikes, eps_for


def calibrate_batchnorm(model, x, seed: int = 1) -> None:
    """Random BN affine parameters and running statistics measured on ``x``, so that every LIF
    layer fires at a useful rate; leaves ``model`` in eval."""
    from spikec.models.activity import batchnorm_from_batch

    batchnorm_from_batch(model, x, affine_seed=seed)


@dataclass
class Agreement:
    flips: Flips            # spike flips of torch against the interpreter (tests/floatcheck.py)
    logits: np.ndarray      # the interpreter's [B, classes]
    ref_logits: np.ndarray  # torch's
    neurons: int

    @property
    def spikes(self) -> int:
        return self.flips.compared

    @property
    def logit_rel_error(self) -> float:
        """Largest logit difference over the samples without a flip, relative to torch's largest."""
        keep = ~self.flips.flipped
        d, r = self.logits[keep] - self.ref_logits[keep], self.ref_logits[keep]
        return float(np.abs(d).max() / max(np.abs(r).max(), 1e-30)) if keep.any() else float("inf")

    def assert_same_logits(self, rel: float) -> None:
        """Logits within ``rel`` of torch's largest, same predictions, on flip-free samples."""
        atol = rel * float(np.abs(self.ref_logits).max())
        assert_close_where_unflipped(self.logits, self.ref_logits, self.flips, rtol=0, atol=atol)


def torch_spikes(graph, model, x) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Run ``model`` (eval, no grad) on the preprocessed batch ``x``: (logits [B, classes], the
    spikes of every neuron module by the name of its LIF op in ``graph``; a module called k
    times gives ``name``, ``name_1``, ...)."""
    import torch

    from spikec.frontends.torch.neurons import reader_for
    from spikec.ir import ops as O
    from spikec.models.activity import reset_neurons

    calls: dict[str, list[np.ndarray]] = {}
    hooks = [m.register_forward_hook(
        lambda mod, a, out, p=path: calls.setdefault(p, []).append(out.detach().numpy()))
        for path, m in model.named_modules() if reader_for(m) is not None]
    reset_neurons(model)
    try:
        with torch.no_grad():
            ref = model(x).numpy()
    finally:
        for h in hooks:
            h.remove()
    lifs = {op.name for op in graph.ops if isinstance(op, O.LIF)}
    spikes = {}
    for path, outs in calls.items():
        for k, got in enumerate(outs):
            name = path if k == 0 else f"{path}_{k}"
            assert name in lifs, f"neuron call {name} has no LIF op"
            spikes[name] = got
    assert set(spikes) == lifs, "a LIF op matches no neuron call"
    return (ref.mean(axis=0) if ref.ndim == 3 else ref), spikes   # per-step outputs: mean


def compare_with_torch(graph, model, raw: np.ndarray, *, dtype=np.float32,
                       max_roots: int = 2) -> Agreement:
    """Run ``graph`` in the interpreter and ``model`` in torch (in ``dtype``) on ``raw`` images and
    compare the spikes of every neuron module with ``floatcheck.check_spikes``: torch and numpy
    sum in different orders, so a spike may flip where the membrane is within the stated epsilon
    of the threshold (at most ``max_roots`` of those), and downstream of such a flip."""
    import torch

    from spikec import interp
    from spikec.interp import preprocess

    x = torch.from_numpy(preprocess(graph.inputs[0], raw, dtype))
    try:
        ref, spikes = torch_spikes(graph, model.double() if dtype == np.float64 else model, x)
    finally:
        model.float()
    trace = interp.run(graph, raw, dtype=dtype, record="all")
    flips = check_spikes(graph, trace, spikes, eps=eps_for(dtype), max_roots=max_roots)
    return Agreement(flips, trace.logits, ref, len(spikes))


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
