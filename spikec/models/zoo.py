"""Pieces shared by the model-zoo families (Spike-driven Transformer V1/V2, QKFormer, Spikingformer,
SEW-ResNet): the official neurons, the IF neuron, direct encoding and the parameter count.

Every official repository builds its neurons as spikingjelly 0.0.0.0.12
``MultiStepLIFNode(tau=2.0, detach_reset=True, backend="cupy")`` (the attention neurons with
``v_threshold=0.5``): decay_input, hard reset to 0, firing on ``>=``. :func:`lif` builds spikec's
bit-exact equivalent. The cupy backend is a speed option of the CUDA kernel, not a semantic one.
"""
from __future__ import annotations

import torch
from torch import nn

from spikec.errors import ShapeError
from spikec.models.lif import MultiStepLIF
from spikec.models.spikformer import init_linear_trunc_normal  # noqa: F401 - one init, re-exported

ATTENTION_THRESHOLD = 0.5
"""Firing threshold of the attention neurons (``attn_lif``, ``talking_heads_lif``) in every family."""


def lif(v_threshold: float = 1.0) -> MultiStepLIF:
    """The official neuron: spikingjelly ``MultiStepLIFNode(tau=2.0, v_threshold, detach_reset=True)``."""
    return MultiStepLIF(tau=2.0, v_threshold=v_threshold, v_reset=0.0, decay_input=True,
                        detach_reset=True)


class MultiStepIF(MultiStepLIF):
    """spikingjelly's multi-step ``IFNode``: ``H[t] = V[t-1] + X[t]``, then fire and reset as
    :class:`MultiStepLIF`.

    It is a ``MultiStepLIF`` with ``tau = inf`` and ``decay_input = False``, whose charge
    ``V - (V - v_reset) / inf + X`` is exactly ``V + X`` (``V / inf == 0`` for every finite ``V``);
    the attributes say so, so that a reader of ``tau``/``decay_input`` gets the IF neuron, and
    :meth:`charge` computes ``V + X`` directly.
    """

    def __init__(self, v_threshold: float = 1.0, v_reset: float | None = 0.0,
                 detach_reset: bool = True):
        super().__init__(tau=float("inf"), v_threshold=v_threshold, v_reset=v_reset,
                         decay_input=False, detach_reset=detach_reset)

    def charge(self, v: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return v + x


def repeat_over_time(x: torch.Tensor, T: int) -> torch.Tensor:
    """Direct encoding as the official forwards write it: ``[B, C, H, W] -> [T, B, C, H, W]``."""
    return (x.unsqueeze(0)).repeat(T, 1, 1, 1, 1)


def check_heads(dim: int, num_heads: int) -> None:
    """Raise ``ShapeError`` unless ``dim`` splits into ``num_heads`` heads."""
    if num_heads < 1 or dim % num_heads:
        raise ShapeError(f"embed_dim {dim} is not divisible by num_heads {num_heads}")


def count_parameters(model: nn.Module, *, include_unused: bool = False) -> int:
    """Trainable parameters as the papers count them.

    Every ``nn.Parameter`` (conv/linear weights and biases, BatchNorm's affine ``weight`` and
    ``bias``; BatchNorm running statistics are buffers, not parameters), except those of modules
    that the official code creates but its forward never calls: each model class lists their leaf
    names in ``UNUSED_IN_FORWARD`` (e.g. Spikingformer's ``norm1``/``norm2`` LayerNorms). They stay
    in the model so that official checkpoints load with ``strict=True``; ``include_unused`` counts
    them too.
    """
    unused: set[str] = set()
    for module in model.modules():
        unused.update(getattr(module, "UNUSED_IN_FORWARD", ()))
    total = 0
    for name, p in model.named_parameters():
        leaves = name.split(".")[:-1]
        if not include_unused and any(leaf in unused for leaf in leaves):
            continue
        total += p.numel()
    return total


class QKVHeads:
    """Mixin of the official attention modules (QKFormer's SSA, Spikingformer's SSA): the branch
    ``<name>_conv -> <name>_bn -> <name>_lif`` on ``[T*B, C, N]``, its spikes split into heads
    ``[T, B, heads, N, d]``."""

    num_heads: int

    def _heads(self, name: str, x_for_qkv: torch.Tensor, T: int, B: int, C: int, N: int):
        out = getattr(self, f"{name}_bn")(getattr(self, f"{name}_conv")(x_for_qkv))
        out = getattr(self, f"{name}_lif")(out.reshape(T, B, C, N).contiguous())
        return (out.transpose(-1, -2).reshape(T, B, N, self.num_heads, C // self.num_heads)
                .permute(0, 1, 3, 2, 4).contiguous())
