"""Spikformer V1 (ImageNet and CIFAR variants) and Spikformer V2, as reference torch models.

Module names and state_dict keys follow the official V1 code (ZK-Zhou/spikformer, ``imagenet/model.py``
and ``cifar10/model.py``), so official checkpoints load with ``strict=True``. The tensor ops keep the
official data flow (``[T, B, ...]`` tensors, ``flatten(0, 1)`` before a conv, ``reshape`` back) because
spikec's torch frontend traces these exact ops.

V2's SCS stem is derived from the paper (no public code); see :class:`SCS`.

Residual joins
--------------
``residual="add"`` is Spikformer's SEW ADD (``x + f(x)``): the residual stream holds counts
(0, 1, 2, ...), not spikes. ``residual="iand"`` is SEW's IAND, ``out = (NOT a) AND s = (1 - a) * s``
for the shortcut spikes ``a`` and the branch spikes ``s``. A purely binary network needs every join
to be IAND, not only the encoder blocks' two: V1's stem joins the RPE spikes to the stem spikes and
V2's stem stages join their conv-MLP to its input, and an ADD there would already feed counts
(0, 1, 2) to the first encoder block. With ``residual="iand"`` all of them are IAND, and then:

* every conv/linear input except the image (direct encoding: the first conv sees real pixels) and
  every attention operand ``q, k, v`` is a spike tensor (max-pooling spikes keeps them spikes);
* the only integer non-spike values are the attention products (``k^T @ v`` and ``q @ (k^T @ v)``),
  which feed nothing but ``attn_lif``;
* the only real values are synaptic currents (conv/BN outputs) and the read-out (token mean, time
  mean, ``head``).
"""
from __future__ import annotations

import torch
from torch import nn

from spikec.errors import ShapeError
from spikec.models import RESIDUAL_JOINS, ResidualJoin
from spikec.models.lif import MultiStepLIF

ATTENTION_SCALE = 0.125
"""SSA's fixed scale (the official code's ``self.scale``; no softmax)."""



class IAND(nn.Module):
    """SEW's IAND join of two spike tensors: ``out = (1 - shortcut) * branch``.

    A module (not an inline expression) so that a tracer can map it to one IR op.
    """

    def forward(self, shortcut: torch.Tensor, branch: torch.Tensor) -> torch.Tensor:
        return (1.0 - shortcut) * branch


def _join(residual: str) -> nn.Module | None:
    """The join module of a residual mode (``None`` for ``add``, written inline as ``a + b``)."""
    if not ResidualJoin.has(residual):
        raise ValueError(f"residual must be one of {RESIDUAL_JOINS}, got {residual!r}")
    return IAND() if residual == ResidualJoin.IAND else None


def _residual(join: nn.Module | None, shortcut: torch.Tensor, branch: torch.Tensor) -> torch.Tensor:
    return shortcut + branch if join is None else join(shortcut, branch)


# ----------------------------------------------------------------------------- V1 ImageNet blocks
class ConvMLP(nn.Module):
    """V1 ImageNet MLP on ``[T, B, C, H, W]``: two 1x1 Conv2d (with bias) + BN + LIF, ``C -> hidden -> C``."""

    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1_conv = nn.Conv2d(dim, hidden, kernel_size=1, stride=1)
        self.fc1_bn = nn.BatchNorm2d(hidden)
        self.fc1_lif = MultiStepLIF(tau=2.0)
        self.fc2_conv = nn.Conv2d(hidden, dim, kernel_size=1, stride=1)
        self.fc2_bn = nn.BatchNorm2d(dim)
        self.fc2_lif = MultiStepLIF(tau=2.0)
        self.c_hidden = hidden

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        T, B, C, H, W = x.shape
        x = self.fc1_conv(x.flatten(0, 1))
        x = self.fc1_bn(x).reshape(T, B, self.c_hidden, H, W).contiguous()
        x = self.fc1_lif(x)
        x = self.fc2_conv(x.flatten(0, 1))
        x = self.fc2_bn(x).reshape(T, B, C, H, W).contiguous()
        return self.fc2_lif(x)


class ConvSSA(nn.Module):
    """V1 ImageNet spiking self-attention on ``[T, B, C, H, W]`` (Conv1d projections).

    ``q, k, v = LIF(BN(Conv1d(x)))`` split into ``heads`` of ``d = C / heads``;
    ``out = proj_lif(proj_bn(proj_conv(attn_lif((q @ (k^T @ v)) * 0.125))))``.
    """

    def __init__(self, dim: int, num_heads: int):
        super().__init__()
        if dim % num_heads:
            raise ShapeError(f"embed_dim {dim} is not divisible by num_heads {num_heads}")
        self.dim = dim
        self.num_heads = num_heads
        self.scale = ATTENTION_SCALE
        self.q_conv = nn.Conv1d(dim, dim, kernel_size=1, stride=1, bias=False)
        self.q_bn = nn.BatchNorm1d(dim)
        self.q_lif = MultiStepLIF(tau=2.0)
        self.k_conv = nn.Conv1d(dim, dim, kernel_size=1, stride=1, bias=False)
        self.k_bn = nn.BatchNorm1d(dim)
        self.k_lif = MultiStepLIF(tau=2.0)
        self.v_conv = nn.Conv1d(dim, dim, kernel_size=1, stride=1, bias=False)
        self.v_bn = nn.BatchNorm1d(dim)
        self.v_lif = MultiStepLIF(tau=2.0)
        self.attn_lif = MultiStepLIF(tau=2.0, v_threshold=0.5)
        self.proj_conv = nn.Conv1d(dim, dim, kernel_size=1, stride=1)
        self.proj_bn = nn.BatchNorm1d(dim)
        self.proj_lif = MultiStepLIF(tau=2.0)

    def _heads(self, conv: nn.Module, bn: nn.Module, lif: nn.Module, x_for_qkv: torch.Tensor,
               T: int, B: int, C: int, N: int) -> torch.Tensor:
        """``[T*B, C, N] -> [T, B, heads, N, d]`` spikes."""
        out = bn(conv(x_for_qkv)).reshape(T, B, C, N).contiguous()
        out = lif(out)
        return out.transpose(-1, -2).reshape(T, B, N, self.num_heads, C // self.num_heads) \
            .permute(0, 1, 3, 2, 4).contiguous()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        T, B, C, H, W = x.shape
        x = x.flatten(3)
        N = x.shape[3]
        x_for_qkv = x.flatten(0, 1)
        q = self._heads(self.q_conv, self.q_bn, self.q_lif, x_for_qkv, T, B, C, N)
        k = self._heads(self.k_conv, self.k_bn, self.k_lif, x_for_qkv, T, B, C, N)
        v = self._heads(self.v_conv, self.v_bn, self.v_lif, x_for_qkv, T, B, C, N)
        x = k.transpose(-2, -1) @ v
        x = (q @ x) * self.scale
        x = x.transpose(3, 4).reshape(T, B, C, N).contiguous()
        x = self.attn_lif(x)
        x = x.flatten(0, 1)
        return self.proj_lif(self.proj_bn(self.proj_conv(x)).reshape(T, B, C, H, W))


# ----------------------------------------------------------------------------- V1 CIFAR blocks
class LinearMLP(nn.Module):
    """V1 CIFAR MLP on ``[T, B, N, C]``: two nn.Linear (with bias) + BN1d (over C) + LIF."""

    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1_linear = nn.Linear(dim, hidden)
        self.fc1_bn = nn.BatchNorm1d(hidden)
        self.fc1_lif = MultiStepLIF(tau=2.0)
        self.fc2_linear = nn.Linear(hidden, dim)
        self.fc2_bn = nn.BatchNorm1d(dim)
        self.fc2_lif = MultiStepLIF(tau=2.0)
        self.c_hidden = hidden

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        T, B, N, C = x.shape
        x = self.fc1_linear(x.flatten(0, 1))
        x = self.fc1_bn(x.transpose(-1, -2)).transpose(-1, -2).reshape(T, B, N, self.c_hidden).contiguous()
        x = self.fc1_lif(x)
        x = self.fc2_linear(x.flatten(0, 1))
        x = self.fc2_bn(x.transpose(-1, -2)).transpose(-1, -2).reshape(T, B, N, C).contiguous()
        return self.fc2_lif(x)


class LinearSSA(nn.Module):
    """V1 CIFAR spiking self-attention on ``[T, B, N, C]`` (nn.Linear projections with bias).

    ``out = proj_lif(proj_bn(proj_linear(attn_lif(((q @ k^T) * 0.125) @ v))))``.
    """

    def __init__(self, dim: int, num_heads: int):
        super().__init__()
        if dim % num_heads:
            raise ShapeError(f"embed_dim {dim} is not divisible by num_heads {num_heads}")
        self.dim = dim
        self.num_heads = num_heads
        self.scale = ATTENTION_SCALE
        self.q_linear = nn.Linear(dim, dim)
        self.q_bn = nn.BatchNorm1d(dim)
        self.q_lif = MultiStepLIF(tau=2.0)
        self.k_linear = nn.Linear(dim, dim)
        self.k_bn = nn.BatchNorm1d(dim)
        self.k_lif = MultiStepLIF(tau=2.0)
        self.v_linear = nn.Linear(dim, dim)
        self.v_bn = nn.BatchNorm1d(dim)
        self.v_lif = MultiStepLIF(tau=2.0)
        self.attn_lif = MultiStepLIF(tau=2.0, v_threshold=0.5)
        self.proj_linear = nn.Linear(dim, dim)
        self.proj_bn = nn.BatchNorm1d(dim)
        self.proj_lif = MultiStepLIF(tau=2.0)

    def _heads(self, linear: nn.Module, bn: nn.Module, lif: nn.Module, x_for_qkv: torch.Tensor,
               T: int, B: int, N: int, C: int) -> torch.Tensor:
        """``[T*B, N, C] -> [T, B, heads, N, d]`` spikes."""
        out = bn(linear(x_for_qkv).transpose(-1, -2)).transpose(-1, -2).reshape(T, B, N, C).contiguous()
        out = lif(out)
        return out.reshape(T, B, N, self.num_heads, C // self.num_heads).permute(0, 1, 3, 2, 4).contiguous()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        T, B, N, C = x.shape
        x_for_qkv = x.flatten(0, 1)
        q = self._heads(self.q_linear, self.q_bn, self.q_lif, x_for_qkv, T, B, N, C)
        k = self._heads(self.k_linear, self.k_bn, self.k_lif, x_for_qkv, T, B, N, C)
        v = self._heads(self.v_linear, self.v_bn, self.v_lif, x_for_qkv, T, B, N, C)
        attn = (q @ k.transpose(-2, -1)) * self.scale
        x = attn @ v
        x = x.transpose(2, 3).reshape(T, B, N, C).contiguous()
        x = self.attn_lif(x)
        x = x.flatten(0, 1)
        x = self.proj_bn(self.proj_linear(x).transpose(-1, -2)).transpose(-1, -2)
        return self.proj_lif(x.reshape(T, B, N, C))


class Block(nn.Module):
    """Encoder block: ``x = join(x, attn(x)); x = join(x, mlp(x))``.

    ``norm1``/``norm2`` are LayerNorms that the official code creates and never uses; they are kept
    so that official checkpoints load with ``strict=True``.
    """

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float, linear: bool, residual: str):
        super().__init__()
        hidden = int(dim * mlp_ratio)
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = LinearSSA(dim, num_heads) if linear else ConvSSA(dim, num_heads)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = LinearMLP(dim, hidden) if linear else ConvMLP(dim, hidden)
        self.join = _join(residual)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = _residual(self.join, x, self.attn(x))
        return _residual(self.join, x, self.mlp(x))


# ----------------------------------------------------------------------------- stems
class SPS(nn.Module):
    """V1's spiking patch splitting on ``[T, B, C_in, H, W]``.

    Four ``proj_conv{i}`` (3x3, stride 1, no bias) + ``proj_bn{i}`` + ``proj_lif{i}`` for i in
    ("", 1, 2, 3) with channels ``C_in -> D/8 -> D/4 -> D/2 -> D``; block ``j`` is followed by
    ``maxpool{i}`` (3, stride 2, pad 1) when ``j in pool_stages`` (ImageNet: all four, CIFAR: 2 and 3).
    Then ``rpe_conv`` (3x3, no bias) + ``rpe_bn`` + ``rpe_lif``, joined with the stem spikes.
    Output ``[T, B, D, H', W']``.
    """

    def __init__(self, in_channels: int, embed_dim: int, pool_stages: tuple[int, ...], residual: str):
        super().__init__()
        if embed_dim % 8:
            raise ShapeError(f"SPS needs embed_dim divisible by 8, got {embed_dim}")
        if not set(pool_stages) <= {0, 1, 2, 3}:
            raise ShapeError(f"pool_stages must be a subset of (0, 1, 2, 3), got {pool_stages}")
        self.pool_stages = tuple(sorted(pool_stages))
        dims = [in_channels, embed_dim // 8, embed_dim // 4, embed_dim // 2, embed_dim]
        for j, suffix in enumerate(("", "1", "2", "3")):
            setattr(self, f"proj_conv{suffix}",
                    nn.Conv2d(dims[j], dims[j + 1], kernel_size=3, stride=1, padding=1, bias=False))
            setattr(self, f"proj_bn{suffix}", nn.BatchNorm2d(dims[j + 1]))
            setattr(self, f"proj_lif{suffix}", MultiStepLIF(tau=2.0))
            if j in self.pool_stages:
                setattr(self, f"maxpool{suffix}",
                        nn.MaxPool2d(kernel_size=3, stride=2, padding=1, dilation=1, ceil_mode=False))
        self.rpe_conv = nn.Conv2d(embed_dim, embed_dim, kernel_size=3, stride=1, padding=1, bias=False)
        self.rpe_bn = nn.BatchNorm2d(embed_dim)
        self.rpe_lif = MultiStepLIF(tau=2.0)
        self.join = _join(residual)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        T, B = x.shape[0], x.shape[1]
        x = x.flatten(0, 1)
        for j, suffix in enumerate(("", "1", "2", "3")):
            x = getattr(self, f"proj_conv{suffix}")(x)
            H, W = x.shape[-2], x.shape[-1]
            x = getattr(self, f"proj_bn{suffix}")(x).reshape(T, B, -1, H, W).contiguous()
            x = getattr(self, f"proj_lif{suffix}")(x).flatten(0, 1).contiguous()
            if j in self.pool_stages:
                x = getattr(self, f"maxpool{suffix}")(x)
        H, W = x.shape[-2], x.shape[-1]
        x_feat = x.reshape(T, B, -1, H, W).contiguous()
        x = self.rpe_conv(x)
        x = self.rpe_bn(x).reshape(T, B, -1, H, W).contiguous()
        x = self.rpe_lif(x)
        return _residual(self.join, x_feat, x)


class SCSStage(nn.Module):
    """One SCS stage on ``[T, B, C_in, H, W]`` -> ``[T, B, C, H/2, W/2]``.

    ``s = LIF(BN(down_conv(x)))`` (kernel 2, stride 2, no bias), then the conv-MLP
    ``m = LIF(BN(fc2_conv(LIF(BN(fc1_conv(s))))))`` with 3x3 convs (pad 1, no bias) ``C -> r*C -> C``,
    joined to ``s`` when ``conv_residual`` (``s + m`` or IAND), else ``m`` alone.
    """

    def __init__(self, in_channels: int, channels: int, mlp_ratio: float, conv_residual: bool,
                 residual: str):
        super().__init__()
        hidden = int(channels * mlp_ratio)
        self.down_conv = nn.Conv2d(in_channels, channels, kernel_size=2, stride=2, bias=False)
        self.down_bn = nn.BatchNorm2d(channels)
        self.down_lif = MultiStepLIF(tau=2.0)
        self.fc1_conv = nn.Conv2d(channels, hidden, kernel_size=3, stride=1, padding=1, bias=False)
        self.fc1_bn = nn.BatchNorm2d(hidden)
        self.fc1_lif = MultiStepLIF(tau=2.0)
        self.fc2_conv = nn.Conv2d(hidden, channels, kernel_size=3, stride=1, padding=1, bias=False)
        self.fc2_bn = nn.BatchNorm2d(channels)
        self.fc2_lif = MultiStepLIF(tau=2.0)
        self.conv_residual = conv_residual
        self.join = _join(residual)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        T, B = x.shape[0], x.shape[1]
        x = self.down_conv(x.flatten(0, 1))
        H, W = x.shape[-2], x.shape[-1]
        s = self.down_lif(self.down_bn(x).reshape(T, B, -1, H, W).contiguous())
        m = self.fc1_conv(s.flatten(0, 1))
        m = self.fc1_lif(self.fc1_bn(m).reshape(T, B, -1, H, W).contiguous())
        m = self.fc2_conv(m.flatten(0, 1))
        m = self.fc2_lif(self.fc2_bn(m).reshape(T, B, -1, H, W).contiguous())
        return _residual(self.join, s, m) if self.conv_residual else m


class SCS(nn.Module):
    """V2's spiking convolutional stem: ``stages`` SCS stages (``stages.{j}``), each halving H and W.

    Channels of the last stage are ``D``, each earlier stage half the next (four stages:
    ``D/8, D/4, D/2, D``; 224 px -> 14x14 tokens; two stages: ``D/2, D``, 28 px -> 7x7). No max-pool,
    no RPE conv.

    No public code exists; the layout is derived from the paper's text and fixed by its parameter
    table. Every conv is bias-free and followed by a BatchNorm (as in V1's SPS): with the conv-MLP
    ratio 4 this reproduces all five V2 counts (rounded to 0.01M), while giving all three convs a
    bias (+6C per stage) already breaks V2-8-384 (29.12M instead of 29.11M). Parameter counts cannot
    tell whether the conv-MLP has a residual join; spikec assumes it has (``stem_residual=True``,
    as every inverted-bottleneck MLP C -> 4C -> C in the literature has), and makes it an option.
    """

    def __init__(self, in_channels: int, embed_dim: int, stages: int, mlp_ratio: float,
                 conv_residual: bool, residual: str):
        super().__init__()
        if not 1 <= stages <= 4 or embed_dim % (1 << (stages - 1)):
            raise ShapeError(f"cannot build {stages} SCS stages for embed_dim {embed_dim}")
        dims = [in_channels] + [embed_dim >> (stages - 1 - j) for j in range(stages)]
        self.stages = nn.ModuleList(
            SCSStage(dims[j], dims[j + 1], mlp_ratio, conv_residual, residual) for j in range(stages))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for stage in self.stages:
            x = stage(x)
        return x


# ----------------------------------------------------------------------------- the networks
class Spikformer(nn.Module):
    """Spikformer (V1 ImageNet / V1 CIFAR / V2): stem, ``depth`` encoder blocks, mean read-out.

    Input ``[B, C_in, H, W]`` float (a static image, repeated ``T`` times: direct encoding);
    output logits ``[B, num_classes]``. Internally tensors are ``[T, B, ...]``.

    Parameters
    ----------
    stem : {"sps", "scs"}
        V1's SPS (+ RPE) or V2's SCS.
    linear_blocks : bool
        CIFAR-style blocks (nn.Linear on ``[T, B, N, C]``) instead of Conv1d/Conv2d on ``[T, B, C, H, W]``.
    pool_stages : tuple of int
        SPS only: which of the four conv blocks are followed by a max-pool.
    stem_stages, stem_mlp_ratio, stem_residual :
        SCS only: number of stages, the conv-MLP expansion ratio, and whether the conv-MLP is joined
        to its input.
    residual : {"add", "iand"}
        How every residual join is made (see the module docstring).
    """

    def __init__(self, *, img_size: int = 224, in_channels: int = 3, num_classes: int = 1000,
                 embed_dim: int = 512, depth: int = 8, num_heads: int = 8, mlp_ratio: float = 4.0,
                 T: int = 4, stem: str = "sps", linear_blocks: bool = False,
                 pool_stages: tuple[int, ...] = (0, 1, 2, 3), stem_stages: int = 4,
                 stem_mlp_ratio: float = 4.0, stem_residual: bool = True, residual: str = "add"):
        super().__init__()
        if T < 1:
            raise ValueError(f"T must be >= 1, got {T}")
        self.T = T
        self.num_classes = num_classes
        self.linear_blocks = linear_blocks
        self.residual = residual
        if stem == "sps":
            self.patch_embed = SPS(in_channels, embed_dim, tuple(pool_stages), residual)
            downsampling = len(pool_stages)
        elif stem == "scs":
            self.patch_embed = SCS(in_channels, embed_dim, stem_stages, stem_mlp_ratio,
                                   stem_residual, residual)
            downsampling = stem_stages
        else:
            raise ValueError(f"stem must be 'sps' or 'scs', got {stem!r}")
        self.tokens_hw = _tokens_side(img_size, downsampling, stem)
        self.block = nn.ModuleList(
            Block(embed_dim, num_heads, mlp_ratio, linear_blocks, residual) for _ in range(depth))
        self.head = nn.Linear(embed_dim, num_classes)
        self.apply(init_linear_trunc_normal)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """``[T, B, C_in, H, W] -> [T, B, D]`` (mean over tokens)."""
        x = self.patch_embed(x)
        if self.linear_blocks:
            x = x.flatten(-2).transpose(-1, -2)  # [T, B, N, C]
            for blk in self.block:
                x = blk(x)
            return x.mean(2)
        for blk in self.block:
            x = blk(x)
        return x.flatten(3).mean(3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = (x.unsqueeze(0)).repeat(self.T, 1, 1, 1, 1)
        x = self.forward_features(x)
        return self.head(x.mean(0))


def _tokens_side(img_size: int, downsampling: int, stem: str) -> int:
    """Token grid side after ``downsampling`` halvings (max-pool 3/2/1 rounds up, a 2/2 conv down)."""
    side = img_size
    for _ in range(downsampling):
        side = (side + 1) // 2 if stem == "sps" else side // 2
    if side < 1:
        raise ShapeError(f"img_size {img_size} is too small for {downsampling} downsampling stages")
    return side


def init_linear_trunc_normal(m: nn.Module) -> None:
    """The official initialisation: truncated normal (std 0.02) Linear weights, zero biases."""
    if isinstance(m, nn.Linear):
        nn.init.trunc_normal_(m.weight, std=0.02)
        if m.bias is not None:
            nn.init.constant_(m.bias, 0.0)
    elif isinstance(m, nn.LayerNorm):
        nn.init.constant_(m.bias, 0.0)
        nn.init.constant_(m.weight, 1.0)


def count_parameters(model: nn.Module, *, include_unused_norms: bool = False) -> int:
    """Number of trainable parameters the papers report.

    Counts every ``nn.Parameter`` (conv/linear weights and biases, BatchNorm's affine ``weight`` and
    ``bias``) and no buffer (BatchNorm running statistics are not parameters). The ``norm1``/``norm2``
    LayerNorms of the encoder blocks, which forward never uses, are excluded unless asked for.

    With this convention, rounding to 0.01M reproduces all five V2 counts and four of the eight V1
    counts; the other four (8-384, 8-512, CIFAR 2-384, CIFAR 4-256) come out 0.01M above the paper,
    which truncated them. No convention that counts every block alike can match all V1 rows, with
    either rounding rule: the rows 6-512, 8-512 and 10-512 (23.37, 29.68, 36.01) need two blocks of
    D = 512 to add less than 6.32M (from 6 to 8) and more than 6.32M (from 8 to 10). Two such blocks
    hold 6,316,032 parameters here.
    """
    total = 0
    for name, p in model.named_parameters():
        leaf = name.split(".")
        if not include_unused_norms and len(leaf) >= 2 and leaf[-2] in ("norm1", "norm2"):
            continue
        total += p.numel()
    return total
