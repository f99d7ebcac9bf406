"""QKFormer (Zhou et al., NeurIPS 2024), as a reference torch model, ImageNet and CIFAR variants.

Written from the official code (zhouchenlin2096/QKFormer: ``imagenet/qkformer.py``,
``hierarchical_spiking_transformer``, and ``cifar10/model.py``, ``spiking_transformer``): the same
module names, so that its published checkpoints load with ``strict=True``, and the same forward.
Tensors are ``[T, B, C, H, W]``; a static image is repeated ``T`` times.

A hierarchical model of three stages with ``D/4``, ``D/2`` and ``D`` channels:

* ``patch_embed1`` (two 3x3 convs with a 1x1 conv shortcut, each + BN + LIF; the two branches'
  spikes are added), ``stage1``: one block with **Q-K token attention**;
* ``patch_embed2`` (same pattern, halving H and W), ``stage2``: token-attention blocks
  (ImageNet 2, CIFAR 1);
* ``patch_embed3``, ``stage3``: blocks with Spikformer's SSA ``attn_lif((q @ (k^T @ v)) * 0.125)``
  (ImageNet ``depth - 3``, CIFAR ``depth - 2``);
* mean over tokens and T, ``head``.

Q-K token attention: ``q, k = LIF(BN(Conv1d(x)))`` split into heads ``[T, B, h, d, N]``;
``a = attn_lif(sum_d q)`` (one spike per head and token, threshold 0.5); ``out = a * k`` (k masked
by a), then ``proj_lif(proj_bn(proj_conv(out)))``. Residuals are SEW ADD of spikes (the stream
holds counts), as in Spikformer.

The ImageNet stem max-pools *before* each neuron (``proj_maxpool`` after the BN); the CIFAR
stem has no pool in ``patch_embed1`` and pools before ``proj4_lif`` in the later stages.
"""
from __future__ import annotations

import torch
from torch import nn

from spikec.errors import ShapeError
from spikec.models import ZOO_CHOICES
from spikec.models.zoo import (ATTENTION_THRESHOLD, QKVHeads, check_heads, init_linear_trunc_normal,
                               lif, repeat_over_time)

VARIANTS = ZOO_CHOICES["variant"]


def _maxpool() -> nn.MaxPool2d:
    return nn.MaxPool2d(kernel_size=3, stride=2, padding=1, dilation=1, ceil_mode=False)


def _conv_bn_lif(module: nn.Module, prefix: str, c_in: int, c_out: int, kernel: int, stride: int):
    """``{prefix}_conv`` (no bias, 'same' padding for 3x3), ``{prefix}_bn``, ``{prefix}_lif``."""
    setattr(module, f"{prefix}_conv", nn.Conv2d(c_in, c_out, kernel_size=kernel, stride=stride,
                                                padding=kernel // 2, bias=False))
    setattr(module, f"{prefix}_bn", nn.BatchNorm2d(c_out))
    setattr(module, f"{prefix}_lif", lif())


def _stage(module: nn.Module, prefix: str, x: torch.Tensor, T: int, B: int,
           pool: bool) -> torch.Tensor:
    """``[T*B, C, H, W]`` -> spikes ``[T, B, C', H', W']``: conv, BN, optional max-pool, LIF."""
    x = getattr(module, f"{prefix}_bn")(getattr(module, f"{prefix}_conv")(x))
    if pool:
        x = getattr(module, f"{prefix}_maxpool")(x)
    H, W = x.shape[-2], x.shape[-1]
    return getattr(module, f"{prefix}_lif")(x.reshape(T, B, -1, H, W).contiguous())


class PatchEmbedInit(nn.Module):
    """``patch_embed1``: ``proj`` (3x3, C_in -> D/2) and ``proj1`` (3x3, -> D), shortcut
    ``proj_res`` (1x1 from ``proj``'s spikes, stride 2 on ImageNet); output ``proj1 + proj_res``
    spikes (values 0..2). ImageNet max-pools after ``proj_bn`` and ``proj1_bn`` (224 -> 56)."""

    def __init__(self, in_channels: int, embed_dims: int, variant: str):
        super().__init__()
        self.pool = variant == "imagenet"
        _conv_bn_lif(self, "proj", in_channels, embed_dims // 2, 3, 1)
        _conv_bn_lif(self, "proj1", embed_dims // 2, embed_dims, 3, 1)
        if self.pool:
            self.proj_maxpool = _maxpool()
            self.proj1_maxpool = _maxpool()
            _conv_bn_lif(self, "proj2", embed_dims, embed_dims, 3, 1)
        _conv_bn_lif(self, "proj_res", embed_dims // 2, embed_dims, 1, 2 if self.pool else 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        T, B = x.shape[0], x.shape[1]
        x = _stage(self, "proj", x.flatten(0, 1), T, B, self.pool).flatten(0, 1).contiguous()
        x_feat = x
        x = _stage(self, "proj1", x, T, B, self.pool)
        if self.pool:
            x = _stage(self, "proj2", x.flatten(0, 1).contiguous(), T, B, False)
        x_feat = _stage(self, "proj_res", x_feat, T, B, False)
        return x + x_feat


class PatchEmbeddingStage(nn.Module):
    """``patch_embed2``/``patch_embed3``: ``proj3`` (3x3, C -> 2C), ``proj4`` (3x3), shortcut
    ``proj_res`` (1x1 stride 2 from the input spikes); halves H and W with a max-pool before the
    neuron (ImageNet after ``proj3_bn``, CIFAR after ``proj4_bn``)."""

    def __init__(self, embed_dims: int, variant: str):
        super().__init__()
        self.variant = variant
        _conv_bn_lif(self, "proj3", embed_dims // 2, embed_dims, 3, 1)
        _conv_bn_lif(self, "proj4", embed_dims, embed_dims, 3, 1)
        if variant == "imagenet":
            self.proj3_maxpool = _maxpool()
        else:
            self.proj4_maxpool = _maxpool()
        _conv_bn_lif(self, "proj_res", embed_dims // 2, embed_dims, 1, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        T, B = x.shape[0], x.shape[1]
        x = x.flatten(0, 1).contiguous()
        x_feat = x
        imagenet = self.variant == "imagenet"
        x = _stage(self, "proj3", x, T, B, imagenet).flatten(0, 1).contiguous()
        x = _stage(self, "proj4", x, T, B, not imagenet)
        x_feat = _stage(self, "proj_res", x_feat, T, B, False)
        return x + x_feat


class MLP(nn.Module):
    """Two 1x1 Conv2d (bias) + BN + LIF, ``C -> hidden -> C`` on ``[T, B, C, H, W]``; the layers
    are ``fc1_*``/``fc2_*`` in the ImageNet code and ``mlp1_*``/``mlp2_*`` in the CIFAR code."""

    def __init__(self, in_features: int, hidden_features: int, names: tuple[str, str]):
        super().__init__()
        self.names = names
        for name, (c_in, c_out) in zip(names, ((in_features, hidden_features),
                                               (hidden_features, in_features))):
            setattr(self, f"{name}_conv", nn.Conv2d(c_in, c_out, kernel_size=1, stride=1))
            setattr(self, f"{name}_bn", nn.BatchNorm2d(c_out))
            setattr(self, f"{name}_lif", lif())
        self.c_hidden = hidden_features
        self.c_output = in_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        T, B, C, H, W = x.shape
        for name, channels in zip(self.names, (self.c_hidden, C)):
            x = getattr(self, f"{name}_conv")(x.flatten(0, 1))
            x = getattr(self, f"{name}_bn")(x).reshape(T, B, channels, H, W).contiguous()
            x = getattr(self, f"{name}_lif")(x)
        return x


def _qkv(module: nn.Module, names: str, dim: int) -> None:
    """``{n}_conv`` (Conv1d 1x1, no bias), ``{n}_bn``, ``{n}_lif`` for each letter ``n`` of ``names``."""
    for name in names:
        setattr(module, f"{name}_conv", nn.Conv1d(dim, dim, kernel_size=1, stride=1, bias=False))
        setattr(module, f"{name}_bn", nn.BatchNorm1d(dim))
        setattr(module, f"{name}_lif", lif())


class TokenQKAttention(nn.Module):
    """``Token_QK_Attention`` on ``[T, B, C, H, W]`` spikes (see the module docstring)."""

    #: axis of ``q [T, B, heads, d, N]`` summed into the mask: a head's channels (token
    #: attention, the official module); 4, the tokens, gives the paper's channel attention
    summed_axis = 3

    def __init__(self, dim: int, num_heads: int):
        super().__init__()
        check_heads(dim, num_heads)
        self.dim = dim
        self.num_heads = num_heads
        _qkv(self, "qk", dim)
        self.attn_lif = lif(ATTENTION_THRESHOLD)
        self.proj_conv = nn.Conv1d(dim, dim, kernel_size=1, stride=1)
        self.proj_bn = nn.BatchNorm1d(dim)
        self.proj_lif = lif()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        T, B, C, H, W = x.shape
        x = x.flatten(3)
        N = x.shape[3]
        x_for_qkv = x.flatten(0, 1)
        q = self.q_lif(self.q_bn(self.q_conv(x_for_qkv)).reshape(T, B, C, N))
        q = q.unsqueeze(2).reshape(T, B, self.num_heads, C // self.num_heads, N)
        k = self.k_lif(self.k_bn(self.k_conv(x_for_qkv)).reshape(T, B, C, N))
        k = k.unsqueeze(2).reshape(T, B, self.num_heads, C // self.num_heads, N)
        attn = self.attn_lif(torch.sum(q, dim=self.summed_axis, keepdim=True))
        x = torch.mul(attn, k).flatten(2, 3)
        x = self.proj_bn(self.proj_conv(x.flatten(0, 1))).reshape(T, B, C, H, W)
        return self.proj_lif(x)


class SpikingSelfAttention(QKVHeads, nn.Module):
    """``Spiking_Self_Attention`` (Spikformer's SSA) on ``[T, B, C, H, W]`` spikes:
    ``proj_lif(proj_bn(proj_conv(attn_lif((q @ (k^T @ v)) * 0.125))))``. ``qkv_mp`` (a
    ``MaxPool1d(4)``) is created by the official code and never called.

    As in the official forward, ``proj_lif`` runs on the ``[T*B, C, N]`` tensor *before* it is
    reshaped back to ``[T, B, ...]``, so its time axis is the flattened ``T*B`` axis: the membrane
    is carried from one sample to the next within a time step (``(t, b) -> (t, b + 1)``). With
    batch 1 this is the ordinary per-step neuron; with a larger batch a sample's output depends
    on the samples before it. Kept so that official checkpoints compute what they were trained to.
    """

    def __init__(self, dim: int, num_heads: int):
        super().__init__()
        check_heads(dim, num_heads)
        self.dim = dim
        self.num_heads = num_heads
        self.scale = 0.125
        _qkv(self, "qkv", dim)
        self.attn_lif = lif(ATTENTION_THRESHOLD)
        self.proj_conv = nn.Conv1d(dim, dim, kernel_size=1, stride=1)
        self.proj_bn = nn.BatchNorm1d(dim)
        self.proj_lif = lif()
        self.qkv_mp = nn.MaxPool1d(4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        T, B, C, H, W = x.shape
        x = x.flatten(3)
        N = x.shape[3]
        x_for_qkv = x.flatten(0, 1)
        q = self._heads("q", x_for_qkv, T, B, C, N)
        k = self._heads("k", x_for_qkv, T, B, C, N)
        v = self._heads("v", x_for_qkv, T, B, C, N)
        x = k.transpose(-2, -1) @ v
        x = (q @ x) * self.scale
        x = self.attn_lif(x.transpose(3, 4).reshape(T, B, C, N).contiguous())
        x = self.proj_lif(self.proj_bn(self.proj_conv(x.flatten(0, 1))))
        return x.reshape(T, B, C, W, H)


class TokenSpikingTransformer(nn.Module):
    """Block with Q-K token attention (``tssa``) and the MLP: ``x + tssa(x)``, then ``x + mlp(x)``."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float, mlp_names: tuple[str, str]):
        super().__init__()
        self.tssa = TokenQKAttention(dim, num_heads)
        self.mlp = MLP(dim, int(dim * mlp_ratio), mlp_names)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.tssa(x)
        return x + self.mlp(x)


class SpikingTransformer(nn.Module):
    """Block with SSA (``attn`` on ImageNet, ``ssa`` on CIFAR) and the MLP."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float, mlp_names: tuple[str, str],
                 attn_name: str):
        super().__init__()
        self.attn_name = attn_name
        setattr(self, attn_name, SpikingSelfAttention(dim, num_heads))
        self.mlp = MLP(dim, int(dim * mlp_ratio), mlp_names)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + getattr(self, self.attn_name)(x)
        return x + self.mlp(x)


class QKFormer(nn.Module):
    """QKFormer: input ``[B, C_in, H, W]`` (repeated ``T`` times), output ``[B, num_classes]``.

    Parameters
    ----------
    variant : {"imagenet", "cifar"}
        The ImageNet code (224 px -> 14x14 tokens; stages of 1, 2 and ``depth - 3`` blocks) or the
        CIFAR code (32 px -> 8x8; 1, 1 and ``depth - 2`` blocks; 8 heads in every stage whatever
        ``num_heads`` says, as the official class overrides it).
    embed_dim : int
        Channels of the last stage (the stages have ``D/4``, ``D/2``, ``D``).
    """

    def __init__(self, *, img_size: int = 224, in_channels: int = 3, num_classes: int = 1000,
                 embed_dim: int = 512, depth: int = 10, num_heads: int = 8, mlp_ratio: float = 4.0,
                 T: int = 4, variant: str = "imagenet"):
        super().__init__()
        if variant not in VARIANTS:
            raise ValueError(f"variant must be one of {VARIANTS}, got {variant!r}")
        imagenet = variant == "imagenet"
        first_stages = 3 if imagenet else 2
        if depth <= first_stages or embed_dim % 8:
            raise ShapeError(f"QKFormer ({variant}) needs depth > {first_stages} and embed_dim "
                             f"divisible by 8, got depth {depth}, embed_dim {embed_dim}")
        if not imagenet:
            num_heads = 8
        mlp_names = ("fc1", "fc2") if imagenet else ("mlp1", "mlp2")
        self.num_classes = num_classes
        self.depths = depth
        self.T = T
        self.patch_embed1 = PatchEmbedInit(in_channels, embed_dim // 4, variant)
        self.stage1 = nn.ModuleList([TokenSpikingTransformer(embed_dim // 4, num_heads, mlp_ratio,
                                                             mlp_names)])
        self.patch_embed2 = PatchEmbeddingStage(embed_dim // 2, variant)
        self.stage2 = nn.ModuleList(
            TokenSpikingTransformer(embed_dim // 2, num_heads, mlp_ratio, mlp_names)
            for _ in range(2 if imagenet else 1))
        self.patch_embed3 = PatchEmbeddingStage(embed_dim, variant)
        self.stage3 = nn.ModuleList(
            SpikingTransformer(embed_dim, num_heads, mlp_ratio, mlp_names,
                               "attn" if imagenet else "ssa")
            for _ in range(depth - first_stages))
        self.head = nn.Linear(embed_dim, num_classes)
        self.apply(init_linear_trunc_normal)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """``[T, B, C_in, H, W] -> [T, B, D]`` (mean over tokens)."""
        x = self.patch_embed1(x)
        for blk in self.stage1:
            x = blk(x)
        x = self.patch_embed2(x)
        for blk in self.stage2:
            x = blk(x)
        x = self.patch_embed3(x)
        for blk in self.stage3:
            x = blk(x)
        return x.flatten(3).mean(3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.forward_features(repeat_over_time(x, self.T))
        return self.head(x.mean(0))


__all__ = ["QKFormer", "TokenQKAttention", "SpikingSelfAttention", "TokenSpikingTransformer",
           "SpikingTransformer", "PatchEmbedInit", "PatchEmbeddingStage", "MLP", "VARIANTS"]
