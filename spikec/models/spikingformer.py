"""Spikingformer (Zhou et al., 2023), as a reference torch model, ImageNet and CIFAR variants.

Written from the official code (zhouchenlin2096/Spikingformer: ``imagenet/model.py`` and
``cifar10/model.py``, class ``vit_snn``): the same module names, so that its published
checkpoints load with ``strict=True``, and the same forward. Tensors are ``[T, B, C, H, W]``; a
static image is repeated ``T`` times.

Spikformer with **membrane-shortcut** residuals: every branch starts with a neuron (``proj_lif``
in the attention, ``mlp1_lif`` in the MLP) and ends on a BatchNorm, so the residual stream holds
real-valued currents and every conv reads binary spikes. The tokenizer is five 3x3 convs
``C_in -> D/8 -> D/4 -> D/2 -> D -> D``, each after a neuron (but the first, which reads the
image) and a max-pool (ImageNet: before the last four convs, 224 px -> 14x14; CIFAR: before the
last two, 32 px -> 8x8). The head reads the mean of the last currents over tokens and T (no
neuron). ``norm1``/``norm2`` are LayerNorms the official blocks create and never call.

Attention: ImageNet ``attn_lif((q @ (k^T @ v)) * 0.125)``, CIFAR ``attn_lif(((q @ k^T) @ v) *
0.125)`` (the same value, summed in a different order).
"""
from __future__ import annotations

import torch
from torch import nn

from spikec.errors import ShapeError
from spikec.models import ZOO_CHOICES
from spikec.models.zoo import (ATTENTION_THRESHOLD, QKVHeads, check_heads, init_linear_trunc_normal,
                               lif, repeat_over_time)

VARIANTS = ZOO_CHOICES["variant"]

# (conv name, bn name, lif name before the conv or None, max-pool name before the conv or None)
_TOKENIZER = {
    "imagenet": [("proj_conv", "proj_bn", None, None)]
    + [(f"proj{i}_conv", f"proj{i}_bn", f"proj{i}_lif", f"maxpool{i}") for i in range(1, 5)],
    "cifar": [("block0_conv", "block0_bn", None, None),
              ("block1_conv", "block1_bn", "block1_lif", None),
              ("block2_conv", "block2_bn", "block2_lif", None),
              ("block3_conv", "block3_bn", "block3_lif", "block3_mp"),
              ("block4_conv", "block4_bn", "block4_lif", "block4_mp")],
}


class SpikingTokenizer(nn.Module):
    """Five ``[neuron, max-pool,] conv 3x3 (no bias), BN`` steps; output currents
    ``[T, B, D, H', W']`` (see the module docstring for the names and pools)."""

    def __init__(self, in_channels: int, embed_dims: int, variant: str):
        super().__init__()
        if embed_dims % 8:
            raise ShapeError(f"SpikingTokenizer needs embed_dims divisible by 8, got {embed_dims}")
        self.steps = _TOKENIZER[variant]
        dims = [in_channels, embed_dims // 8, embed_dims // 4, embed_dims // 2, embed_dims,
                embed_dims]
        for j, (conv, bn, neuron, pool) in enumerate(self.steps):
            if neuron is not None:
                setattr(self, neuron, lif())
            if pool is not None:
                setattr(self, pool, nn.MaxPool2d(kernel_size=3, stride=2, padding=1, dilation=1,
                                                 ceil_mode=False))
            setattr(self, conv, nn.Conv2d(dims[j], dims[j + 1], kernel_size=3, stride=1,
                                          padding=1, bias=False))
            setattr(self, bn, nn.BatchNorm2d(dims[j + 1]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        T, B = x.shape[0], x.shape[1]
        x = x.flatten(0, 1)
        for conv, bn, neuron, pool in self.steps:
            if neuron is not None:
                x = getattr(self, neuron)(x).flatten(0, 1).contiguous()
            if pool is not None:
                x = getattr(self, pool)(x)
            x = getattr(self, bn)(getattr(self, conv)(x))
            H, W = x.shape[-2], x.shape[-1]
            x = x.reshape(T, B, -1, H, W).contiguous()
        return x


class MLP(nn.Module):
    """``mlp2_bn(mlp2_conv(mlp2_lif(mlp1_bn(mlp1_conv(mlp1_lif(x))))))``, 1x1 Conv2d (bias)
    ``C -> hidden -> C``; the output is a current."""

    def __init__(self, in_features: int, hidden_features: int):
        super().__init__()
        self.mlp1_lif = lif()
        self.mlp1_conv = nn.Conv2d(in_features, hidden_features, kernel_size=1, stride=1)
        self.mlp1_bn = nn.BatchNorm2d(hidden_features)
        self.mlp2_lif = lif()
        self.mlp2_conv = nn.Conv2d(hidden_features, in_features, kernel_size=1, stride=1)
        self.mlp2_bn = nn.BatchNorm2d(in_features)
        self.c_hidden = hidden_features
        self.c_output = in_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        T, B, C, H, W = x.shape
        x = self.mlp1_conv(self.mlp1_lif(x).flatten(0, 1))
        x = self.mlp1_bn(x).reshape(T, B, self.c_hidden, H, W).contiguous()
        x = self.mlp2_conv(self.mlp2_lif(x).flatten(0, 1))
        return self.mlp2_bn(x).reshape(T, B, C, H, W).contiguous()


class SpikingSelfAttention(QKVHeads, nn.Module):
    """SSA on ``[T, B, C, H, W]`` currents: ``s = proj_lif(x)``, ``q, k, v = LIF(BN(Conv1d(s)))``,
    ``proj_bn(proj_conv(attn_lif(attention * 0.125)))`` (a current)."""

    def __init__(self, dim: int, num_heads: int, kv_first: bool):
        super().__init__()
        check_heads(dim, num_heads)
        self.dim = dim
        self.num_heads = num_heads
        self.scale = 0.125
        self.kv_first = kv_first
        self.proj_lif = lif()
        for name in ("q", "k", "v"):
            setattr(self, f"{name}_conv", nn.Conv1d(dim, dim, kernel_size=1, stride=1, bias=False))
            setattr(self, f"{name}_bn", nn.BatchNorm1d(dim))
            setattr(self, f"{name}_lif", lif())
        self.attn_lif = lif(ATTENTION_THRESHOLD)
        self.proj_conv = nn.Conv1d(dim, dim, kernel_size=1, stride=1)
        self.proj_bn = nn.BatchNorm1d(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        T, B, C, H, W = x.shape
        x = self.proj_lif(x).flatten(3)
        N = x.shape[3]
        x_for_qkv = x.flatten(0, 1)
        q = self._heads("q", x_for_qkv, T, B, C, N)
        k = self._heads("k", x_for_qkv, T, B, C, N)
        v = self._heads("v", x_for_qkv, T, B, C, N)
        if self.kv_first:
            x = (q @ (k.transpose(-2, -1) @ v)) * self.scale
        else:
            x = ((q @ k.transpose(-2, -1)) @ v) * 0.125
        x = self.attn_lif(x.transpose(3, 4).reshape(T, B, C, N).contiguous())
        return self.proj_bn(self.proj_conv(x.flatten(0, 1))).reshape(T, B, C, H, W)


class SpikingTransformer(nn.Module):
    """Block: ``x + attn(x)``, then ``x + mlp(x)`` (membrane shortcuts). ``norm1``/``norm2`` are
    never called (kept for ``strict=True`` loading; excluded from the parameter count)."""

    UNUSED_IN_FORWARD = ("norm1", "norm2")

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float, variant: str):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)  # the training scripts pass no norm_layer: torch's default
        self.attn = SpikingSelfAttention(dim, num_heads, kv_first=variant == "imagenet")
        self.drop_path = nn.Identity()
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = MLP(dim, int(dim * mlp_ratio))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(x)
        return x + self.mlp(x)


class Spikingformer(nn.Module):
    """Spikingformer (``vit_snn``): input ``[B, C_in, H, W]`` (repeated ``T`` times), output
    logits ``[B, num_classes]``.

    Parameters
    ----------
    variant : {"imagenet", "cifar"}
        Tokenizer names and pools, and the attention's association order (module docstring).
    """

    def __init__(self, *, img_size: int = 224, in_channels: int = 3, num_classes: int = 1000,
                 embed_dim: int = 512, depth: int = 8, num_heads: int = 8, mlp_ratio: float = 4.0,
                 T: int = 4, variant: str = "imagenet"):
        super().__init__()
        if variant not in VARIANTS:
            raise ValueError(f"variant must be one of {VARIANTS}, got {variant!r}")
        self.num_classes = num_classes
        self.depths = depth
        self.T = T
        self.patch_embed = SpikingTokenizer(in_channels, embed_dim, variant)
        self.block = nn.ModuleList(
            SpikingTransformer(embed_dim, num_heads, mlp_ratio, variant) for _ in range(depth))
        self.head = nn.Linear(embed_dim, num_classes)
        self.apply(init_linear_trunc_normal)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """``[T, B, C_in, H, W] -> [T, B, D]`` (mean over tokens of the last currents)."""
        x = self.patch_embed(x)
        for blk in self.block:
            x = blk(x)
        return x.flatten(3).mean(3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.forward_features(repeat_over_time(x, self.T))
        return self.head(x.mean(0))


__all__ = ["Spikingformer", "SpikingTokenizer", "SpikingSelfAttention", "SpikingTransformer", "MLP",
           "VARIANTS"]
