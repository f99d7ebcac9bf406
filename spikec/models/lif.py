"""spikingjelly's multi-step LIF neuron (``MultiStepLIFNode`` of spikingjelly 0.0.0.0.12), in plain torch.

Per time step ``t``, with membrane ``V`` (0 before the first step of every forward call)::

    H[t] = V[t-1] + (X[t] - (V[t-1] - v_reset)) / tau     decay_input, hard reset
    H[t] = V[t-1] + (X[t] - V[t-1]) / tau                 decay_input, soft reset (v_reset None)
    H[t] = V[t-1] - (V[t-1] - v_reset) / tau + X[t]       not decay_input (v_reset 0 when None)
    S[t] = 1 if H[t] >= v_threshold else 0
    V[t] = H[t] * (1 - S[t]) + v_reset * S[t]             hard reset
    V[t] = H[t] - v_threshold * S[t]                      soft reset

The charge is evaluated in float32 in exactly the order written, so that a numpy interpreter that
computes ``h = v + (x - (v - v_reset)) / tau`` matches it bit for bit.
"""
from __future__ import annotations

import torch
from torch import nn

SURROGATE_ALPHA = 4.0
"""Steepness of the sigmoid surrogate gradient (spikingjelly's ``surrogate.Sigmoid`` default)."""


class SigmoidSpike(torch.autograd.Function):
    """Heaviside step with a sigmoid surrogate gradient.

    forward:  ``s = 1 if x >= 0 else 0``
    backward: ``ds/dx = alpha * sig(alpha x) * (1 - sig(alpha x))``
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor, alpha: float) -> torch.Tensor:
        ctx.save_for_backward(x)
        ctx.alpha = alpha
        return (x >= 0).to(x.dtype)

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):
        (x,) = ctx.saved_tensors
        sig = torch.sigmoid(ctx.alpha * x)
        return grad_out * ctx.alpha * sig * (1.0 - sig), None


def sigmoid_spike(x: torch.Tensor, alpha: float = SURROGATE_ALPHA) -> torch.Tensor:
    """``heaviside(x)`` (with ``>=``) forward, sigmoid surrogate gradient backward."""
    return SigmoidSpike.apply(x, alpha)


class MultiStepLIF(nn.Module):
    """Multi-step LIF neuron over a ``[T, ...]`` input (see the module docstring for the equations).

    Parameters
    ----------
    tau : float
        Membrane time constant in time steps (spikingjelly default 2.0).
    v_threshold : float
        Firing threshold; a neuron fires when ``H >= v_threshold``.
    v_reset : float or None
        Hard-reset potential; ``None`` selects the soft reset (subtract the threshold).
    decay_input : bool
        Whether the input is divided by ``tau`` too.
    detach_reset : bool
        Cut the gradient through the reset (the forward result is the same).
    surrogate_alpha : float
        Steepness of the sigmoid surrogate gradient.

    Shapes
    ------
    input ``[T, *]`` float; output ``[T, *]`` of 0.0/1.0 in the input's dtype. No state is kept
    between calls and the module has no parameters or buffers.
    """

    def __init__(self, tau: float = 2.0, v_threshold: float = 1.0, v_reset: float | None = 0.0,
                 decay_input: bool = True, detach_reset: bool = False,
                 surrogate_alpha: float = SURROGATE_ALPHA):
        super().__init__()
        if not tau > 1.0:
            raise ValueError(f"tau must be > 1, got {tau}")
        self.tau = float(tau)
        self.v_threshold = float(v_threshold)
        self.v_reset = None if v_reset is None else float(v_reset)
        self.decay_input = bool(decay_input)
        self.detach_reset = bool(detach_reset)
        self.surrogate_alpha = float(surrogate_alpha)

    def extra_repr(self) -> str:
        return (f"tau={self.tau}, v_threshold={self.v_threshold}, v_reset={self.v_reset}, "
                f"decay_input={self.decay_input}, detach_reset={self.detach_reset}")

    def charge(self, v: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """One step of membrane charging: ``H`` from the previous ``V`` and the input ``X``."""
        if self.decay_input:
            if self.v_reset is None:
                return v + (x - v) / self.tau
            return v + (x - (v - self.v_reset)) / self.tau
        if self.v_reset is None:
            return v - v / self.tau + x
        return v - (v - self.v_reset) / self.tau + x

    def reset(self, h: torch.Tensor, spike: torch.Tensor) -> torch.Tensor:
        """Membrane after firing: hard reset to ``v_reset`` or soft reset by ``v_threshold``."""
        s = spike.detach() if self.detach_reset else spike
        if self.v_reset is None:
            return h - s * self.v_threshold
        return (1.0 - s) * h + s * self.v_reset

    def forward(self, x_seq: torch.Tensor) -> torch.Tensor:
        if x_seq.dim() < 1:
            raise ValueError("MultiStepLIF expects a [T, ...] input")
        v = torch.zeros_like(x_seq[0])
        spikes = []
        for t in range(x_seq.shape[0]):
            h = self.charge(v, x_seq[t])
            spike = sigmoid_spike(h - self.v_threshold, self.surrogate_alpha)
            v = self.reset(h, spike)
            spikes.append(spike)
        return torch.stack(spikes)
