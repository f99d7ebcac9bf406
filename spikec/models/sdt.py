"""Spike-driven Transformer V1 (Yao et al., NeurIPS 2023), as a reference torch model.

Written from the official code (BICLab/Spike-Driven-Transformer: ``module/sps.py``,
``module/ms_conv.py``, ``model/spikeformer.py``, ``spike_mode="lif"``): the same module names, so
that its published checkpoints load with ``strict=True``, and the same forward. Tensors are
``[T, B, C, H, W]``; a static image is repeated ``T`` times.

What differs from Spikformer
----------------------------
* **Membrane shortcut**: every residual adds real-valued BatchNorm outputs (membrane currents),
  and every branch starts with its own neuron (``shortcut_lif``, ``fc1_lif``), so each conv reads
  binary spikes. The stem ends on currents too (``rpe_bn(...) + x_feat``).
* **SDSA** (spike-driven self-attention): ``kv = talking_heads_lif(sum_N(K * V))`` (Hadamard
  product of spikes = AND, a token sum = a count, threshold 0.5), ``out = Q * kv`` (a mask); no
  ``Q K^T``. The official module also creates ``attn_lif`` and a ``talking_heads`` Conv1d that its
  forward never calls; both are kept for ``strict=True`` loading.
* The head reads spikes: ``head(head_lif(mean_N(x)))``, then the mean over T.

Left out: the official forward's ``hook`` argument and tuple returns (a firing-rate probe; here
``forward`` returns the logits), TET (per-step logits) and the ``plif`` spike mode.
"""
from __future__ import annotations

import torch
from torch import nn

from spikec.errors import ShapeError
from spikec.models.zoo import ATTENTION_THRESHOLD, check_heads, lif, repeat_over_time

_STAGES = ("", "1", "2", "3")


class Erode(nn.Module):
    """The DVS mode's 3x3 max-pool (stride 1) over the last two axes of a 5-D tensor (``pool``)."""

    def __init__(self):
        super().__init__()
        self.pool = nn.MaxPool3d(kernel_size=(1, 3, 3), stride=(1, 1, 1), padding=(0, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(x)


class MSPatchSplitting(nn.Module):
    """``MS_SPS``: four conv stages ``C_in -> D/8 -> D/4 -> D/2 -> D`` and the RPE conv.

    Stage ``j`` (names ``proj_conv{i}``, ``proj_bn{i}``, ``proj_lif{i}``, ``maxpool{i}`` for
    ``i in ("", 1, 2, 3)``): 3x3 conv (no bias) + BN; the first three fire and are then max-pooled
    when ``pooling_stat[j] == "1"``; the last is max-pooled *before* its neuron, and that pooled
    current ``x_feat`` is the shortcut of the RPE branch:
    ``out = rpe_bn(rpe_conv(proj_lif3(x_feat))) + x_feat`` (currents, not spikes).
    """

    def __init__(self, in_channels: int, embed_dims: int, pooling_stat: str):
        super().__init__()
        if embed_dims % 8:
            raise ShapeError(f"MS_SPS needs embed_dims divisible by 8, got {embed_dims}")
        if len(pooling_stat) != 4 or set(pooling_stat) - {"0", "1"}:
            raise ShapeError(f"pooling_stat must be four 0/1 characters, got {pooling_stat!r}")
        self.pooling_stat = pooling_stat
        dims = [in_channels, embed_dims // 8, embed_dims // 4, embed_dims // 2, embed_dims]
        for j, i in enumerate(_STAGES):
            setattr(self, f"proj_conv{i}", nn.Conv2d(dims[j], dims[j + 1], kernel_size=3, stride=1,
                                                     padding=1, bias=False))
            setattr(self, f"proj_bn{i}", nn.BatchNorm2d(dims[j + 1]))
            setattr(self, f"proj_lif{i}", lif())
            setattr(self, f"maxpool{i}", nn.MaxPool2d(kernel_size=3, stride=2, padding=1,
                                                      dilation=1, ceil_mode=False))
        self.rpe_conv = nn.Conv2d(embed_dims, embed_dims, kernel_size=3, stride=1, padding=1,
                                  bias=False)
        self.rpe_bn = nn.BatchNorm2d(embed_dims)
        self.rpe_lif = lif()  # created by the official code, never called

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        T, B = x.shape[0], x.shape[1]
        x = x.flatten(0, 1)
        for j, i in enumerate(_STAGES[:3]):
            x = getattr(self, f"proj_conv{i}")(x)
            H, W = x.shape[-2], x.shape[-1]
            x = getattr(self, f"proj_bn{i}")(x).reshape(T, B, -1, H, W).contiguous()
            x = getattr(self, f"proj_lif{i}")(x).flatten(0, 1).contiguous()
            if self.pooling_stat[j] == "1":
                x = getattr(self, f"maxpool{i}")(x)
        x = self.proj_bn3(self.proj_conv3(x))
        if self.pooling_stat[3] == "1":
            x = self.maxpool3(x)
        H, W = x.shape[-2], x.shape[-1]
        x_feat = x
        x = self.proj_lif3(x.reshape(T, B, -1, H, W).contiguous()).flatten(0, 1).contiguous()
        x = self.rpe_bn(self.rpe_conv(x))
        return (x + x_feat).reshape(T, B, -1, H, W).contiguous()


class MSMLPConv(nn.Module):
    """``MS_MLP_Conv`` on ``[T, B, C, H, W]`` currents: ``x + fc2_bn(fc2_conv(fc2_lif(fc1_bn(
    fc1_conv(fc1_lif(x))))))`` with 1x1 convs (bias) ``C -> hidden -> C``; when ``hidden == C``
    the hidden current is also joined to ``x`` (the official ``res``)."""

    def __init__(self, in_features: int, hidden_features: int):
        super().__init__()
        self.res = in_features == hidden_features
        self.fc1_conv = nn.Conv2d(in_features, hidden_features, kernel_size=1, stride=1)
        self.fc1_bn = nn.BatchNorm2d(hidden_features)
        self.fc1_lif = lif()
        self.fc2_conv = nn.Conv2d(hidden_features, in_features, kernel_size=1, stride=1)
        self.fc2_bn = nn.BatchNorm2d(in_features)
        self.fc2_lif = lif()
        self.c_hidden = hidden_features
        self.c_output = in_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        T, B, C, H, W = x.shape
        identity = x
        x = self.fc1_conv(self.fc1_lif(x).flatten(0, 1))
        x = self.fc1_bn(x).reshape(T, B, self.c_hidden, H, W).contiguous()
        if self.res:
            x = identity + x
            identity = x
        x = self.fc2_conv(self.fc2_lif(x).flatten(0, 1))
        x = self.fc2_bn(x).reshape(T, B, C, H, W).contiguous()
        return x + identity


class MSSSAConv(nn.Module):
    """``MS_SSA_Conv``: spike-driven self-attention (SDSA) on ``[T, B, C, H, W]`` currents.

    ``s = shortcut_lif(x)``; ``q, k, v = LIF(BN(Conv2d_1x1(s)))`` split into heads
    ``[T, B, h, N, d]``; ``kv = talking_heads_lif(sum_N(k * v))`` (threshold 0.5);
    ``out = x + proj_bn(proj_conv(q * kv))``. With ``dvs`` a 3x3 max-pool (:class:`Erode`)
    follows ``k``, ``v``, ``k * v`` and ``q * kv``.
    """

    UNUSED_IN_FORWARD = ("talking_heads", "attn_lif")

    def __init__(self, dim: int, num_heads: int, dvs: bool = False):
        super().__init__()
        check_heads(dim, num_heads)
        self.dim = dim
        self.dvs = dvs
        self.num_heads = num_heads
        if dvs:
            self.pool = Erode()
        self.scale = 0.125  # created by the official code, not used by SDSA
        for name in ("q", "k", "v"):
            setattr(self, f"{name}_conv", nn.Conv2d(dim, dim, kernel_size=1, stride=1, bias=False))
            setattr(self, f"{name}_bn", nn.BatchNorm2d(dim))
            setattr(self, f"{name}_lif", lif())
        self.attn_lif = lif(ATTENTION_THRESHOLD)
        self.talking_heads = nn.Conv1d(num_heads, num_heads, kernel_size=1, stride=1, bias=False)
        self.talking_heads_lif = lif(ATTENTION_THRESHOLD)
        self.proj_conv = nn.Conv2d(dim, dim, kernel_size=1, stride=1)
        self.proj_bn = nn.BatchNorm2d(dim)
        self.shortcut_lif = lif()

    def _heads(self, name: str, x_for_qkv: torch.Tensor, T: int, B: int, C: int, H: int,
               W: int) -> torch.Tensor:
        """``[T*B, C, H, W]`` -> spikes ``[T, B, heads, N, d]`` through ``{name}_conv/bn/lif``."""
        out = getattr(self, f"{name}_bn")(getattr(self, f"{name}_conv")(x_for_qkv))
        out = getattr(self, f"{name}_lif")(out.reshape(T, B, C, H, W).contiguous())
        if self.dvs and name != "q":
            out = self.pool(out)
        return (out.flatten(3).transpose(-1, -2)
                .reshape(T, B, H * W, self.num_heads, C // self.num_heads)
                .permute(0, 1, 3, 2, 4).contiguous())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        T, B, C, H, W = x.shape
        identity = x
        x_for_qkv = self.shortcut_lif(x).flatten(0, 1)
        q = self._heads("q", x_for_qkv, T, B, C, H, W)
        k = self._heads("k", x_for_qkv, T, B, C, H, W)
        v = self._heads("v", x_for_qkv, T, B, C, H, W)
        kv = k.mul(v)
        if self.dvs:
            kv = self.pool(kv)
        kv = self.talking_heads_lif(kv.sum(dim=-2, keepdim=True))
        x = q.mul(kv)
        if self.dvs:
            x = self.pool(x)
        x = x.transpose(3, 4).reshape(T, B, C, H, W).contiguous()
        x = self.proj_bn(self.proj_conv(x.flatten(0, 1))).reshape(T, B, C, H, W).contiguous()
        return x + identity


class MSBlockConv(nn.Module):
    """``MS_Block_Conv``: ``mlp(attn(x))``, each with its own membrane shortcut.

    ``drop_path`` is created (as ``nn.Identity``: it has no parameters) but, as in the official
    forward, never applied.
    """

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float, dvs: bool = False):
        super().__init__()
        self.attn = MSSSAConv(dim, num_heads, dvs=dvs)
        self.drop_path = nn.Identity()
        self.mlp = MSMLPConv(dim, int(dim * mlp_ratio))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.mlp(self.attn(x))


class SpikeDrivenTransformer(nn.Module):
    """Spike-driven Transformer V1: ``MS_SPS``, ``depth`` blocks, ``head_lif`` + ``head``.

    Input ``[B, C_in, H, W]`` (repeated ``T`` times) or ``[B, T, C_in, H, W]`` (event frames,
    transposed to ``[T, B, ...]``); output logits ``[B, num_classes]`` (mean over T).

    Parameters
    ----------
    pooling_stat : str
        Which of the four stem stages max-pool (ImageNet ``"1111"``: 224 px -> 14x14 tokens;
        CIFAR ``"0011"``: 32 px -> 8x8).
    dvs_mode : bool
        The neuromorphic variant's extra 3x3 max-pools in SDSA.
    """

    def __init__(self, *, img_size: int = 224, in_channels: int = 3, num_classes: int = 1000,
                 embed_dim: int = 512, depth: int = 8, num_heads: int = 8, mlp_ratio: float = 4.0,
                 T: int = 4, pooling_stat: str = "1111", dvs_mode: bool = False):
        super().__init__()
        if T < 1:
            raise ValueError(f"T must be >= 1, got {T}")
        self.num_classes = num_classes
        self.depths = depth
        self.T = T
        self.dvs = dvs_mode
        self.patch_embed = MSPatchSplitting(in_channels, embed_dim, pooling_stat)
        self.block = nn.ModuleList(
            MSBlockConv(embed_dim, num_heads, mlp_ratio, dvs=dvs_mode) for _ in range(depth))
        self.head_lif = lif()
        self.head = nn.Linear(embed_dim, num_classes)
        self.apply(_init_weights)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """``[T, B, C_in, H, W] -> [T, B, D]`` (mean over tokens of the last block's currents)."""
        x = self.patch_embed(x)
        for blk in self.block:
            x = blk(x)
        return x.flatten(3).mean(3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() < 5:
            x = repeat_over_time(x, self.T)
        else:
            x = x.transpose(0, 1).contiguous()
        x = self.head_lif(self.forward_features(x))
        return self.head(x).mean(0)


def _init_weights(m: nn.Module) -> None:
    """The official initialisation: trunc-normal (std 0.02) Conv2d weights, zero conv biases,
    unit BatchNorm2d (torch's defaults elsewhere)."""
    if isinstance(m, nn.Conv2d):
        nn.init.trunc_normal_(m.weight, std=0.02)
        if m.bias is not None:
            nn.init.constant_(m.bias, 0.0)
    elif isinstance(m, nn.BatchNorm2d):
        nn.init.constant_(m.bias, 0.0)
        nn.init.constant_(m.weight, 1.0)


__all__ = ["SpikeDrivenTransformer", "MSPatchSplitting", "MSSSAConv", "MSMLPConv", "MSBlockConv",
           "Erode"]
