"""Realistic activity for random-weight models (tests, benchmarks, examples without training).

With the registry's initialisation alone a Spikformer is silent after its first layer (float model
included), so a random model exercises nothing but empty layers. ``batchnorm_from_batch`` gives
every BatchNorm the statistics of one batch, so that each pre-activation is about N(0, 1) per
channel before the affine and its LIF fires at a useful rate.
"""
from __future__ import annotations

import torch


def batchnorm_from_batch(model: torch.nn.Module, x: torch.Tensor, *,
                         affine_seed: int | None = None) -> None:
    """Set every BatchNorm's running statistics to those of one forward pass on ``x`` (the model's
    float input). With ``affine_seed``, also draw the affine parameters (gamma in [0.5, 2), beta in
    [0.2, 1.2)) from a generator seeded with it. Leaves ``model`` in eval mode with every neuron's
    state reset."""
    gen = torch.Generator().manual_seed(affine_seed) if affine_seed is not None else None
    for m in model.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.reset_running_stats()
            m.momentum = None  # cumulative average: one batch gives its exact statistics
            if gen is not None:
                with torch.no_grad():
                    m.weight.copy_(torch.rand(m.num_features, generator=gen) * 1.5 + 0.5)
                    m.bias.copy_(torch.rand(m.num_features, generator=gen) + 0.2)
    model.train()
    with torch.no_grad():
        model(x)
    model.eval()
    reset_neurons(model)


def reset_neurons(model: torch.nn.Module) -> None:
    """spikingjelly's ``functional.reset_net``: reset the modules that keep state between calls."""
    for m in model.modules():
        if hasattr(m, "reset") and callable(m.reset) and hasattr(m, "v"):
            m.reset()
