"""Meta-SpikeFormer = Spike-driven Transformer V2 (Yao et al., ICLR 2024), as a reference torch model.

Written from the official code (BICLab/Spike-Driven-Transformer-V2, ``classification/models.py``,
``Spiking_vit_MetaFormer`` and ``metaspikformer_8_{384,512,768}``): the same module names, so that
its published checkpoints load with ``strict=True``, and the same forward. Tensors are
``[T, B, C, H, W]``; a static image is repeated ``T`` times.

Layout (``embed_dim = [C1, C2, C3, C4]``; 224 px):

* two conv stages: ``downsample1_1`` (7x7 s2, 3 -> C1/2), ``ConvBlock1_1``, ``downsample1_2``
  (3x3 s2 -> C1), ``ConvBlock1_2``, ``downsample2`` (-> C2), ``ConvBlock2_1``, ``ConvBlock2_2``;
  each conv block is a SepConv (pointwise, depthwise 7x7, pointwise) then a 3x3 conv-MLP
  ``C -> 4C -> C``, each with a membrane shortcut;
* two transformer stages: ``downsample3`` (-> C3, 14x14), six ``block3``; ``downsample4``
  (stride 1, -> C4), two ``block4``. Attention: q, k, v from RepConv (1x1, BN with border pad,
  depthwise 3x3, 1x1, BN) + BN + LIF, ``attn_lif((q @ (k^T @ v)) * 0.125)`` (threshold 0.5),
  RepConv projection; the MLP is two Conv1d;
* ``lif`` on the token mean, ``head`` (and ``head_kd`` when trained with distillation), mean over T.

Every residual adds real-valued currents; every conv reads spikes (each branch starts with a
neuron), except ``downsample1_1``, which reads the image.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from spikec.models.zoo import (ATTENTION_THRESHOLD, check_heads, init_linear_trunc_normal, lif,
                               repeat_over_time)


class BNAndPadLayer(nn.Module):
    """BatchNorm2d (``bn``), then a border of ``pad_pixels`` filled with what BN makes of a zero
    input, ``bias - running_mean * weight / sqrt(running_var + eps)`` per channel (so that a
    following unpadded 3x3 conv sees the BN of a zero-padded input)."""

    def __init__(self, pad_pixels: int, num_features: int):
        super().__init__()
        self.bn = nn.BatchNorm2d(num_features)
        self.pad_pixels = pad_pixels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn(x)
        p = self.pad_pixels
        if p <= 0:
            return out
        bn = self.bn
        pad_values = bn.bias.detach() - bn.running_mean * bn.weight.detach() / torch.sqrt(
            bn.running_var + bn.eps)
        out = F.pad(out, [p] * 4)
        pad_values = pad_values.view(1, -1, 1, 1)
        out[:, :, 0:p, :] = pad_values
        out[:, :, -p:, :] = pad_values
        out[:, :, :, 0:p] = pad_values
        out[:, :, :, -p:] = pad_values
        return out


class RepConv(nn.Module):
    """``body``: 1x1 conv (C -> C), :class:`BNAndPadLayer` (pad 1), then depthwise 3x3 (no pad),
    1x1 conv (C -> C_out), BN. All convs bias-free; output keeps H and W."""

    def __init__(self, in_channel: int, out_channel: int):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(in_channel, in_channel, 1, 1, 0, bias=False, groups=1),
            BNAndPadLayer(pad_pixels=1, num_features=in_channel),
            nn.Sequential(
                nn.Conv2d(in_channel, in_channel, 3, 1, 0, groups=in_channel, bias=False),
                nn.Conv2d(in_channel, out_channel, 1, 1, 0, groups=1, bias=False),
                nn.BatchNorm2d(out_channel)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


class SepConv(nn.Module):
    """Inverted separable conv on ``[T, B, C, H, W]``: ``bn2(pwconv2(dwconv(lif2(bn1(pwconv1(
    lif1(x)))))))`` with ``C -> 2C`` pointwise, depthwise 7x7 (pad 3), ``2C -> C`` pointwise."""

    def __init__(self, dim: int, expansion_ratio: float = 2, kernel_size: int = 7, padding: int = 3):
        super().__init__()
        med = int(expansion_ratio * dim)
        self.lif1 = lif()
        self.pwconv1 = nn.Conv2d(dim, med, kernel_size=1, stride=1, bias=False)
        self.bn1 = nn.BatchNorm2d(med)
        self.lif2 = lif()
        self.dwconv = nn.Conv2d(med, med, kernel_size=kernel_size, padding=padding, groups=med,
                                bias=False)
        self.pwconv2 = nn.Conv2d(med, dim, kernel_size=1, stride=1, bias=False)
        self.bn2 = nn.BatchNorm2d(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        T, B, C, H, W = x.shape
        x = self.bn1(self.pwconv1(self.lif1(x).flatten(0, 1))).reshape(T, B, -1, H, W)
        x = self.dwconv(self.lif2(x).flatten(0, 1))
        return self.bn2(self.pwconv2(x)).reshape(T, B, -1, H, W)


class MSConvBlock(nn.Module):
    """``MS_ConvBlock``: ``x = x + Conv(x)`` (SepConv), then ``x + bn2(conv2(lif2(bn1(conv1(
    lif1(x))))))`` with 3x3 convs (no bias) ``C -> ratio*C -> C``."""

    def __init__(self, dim: int, mlp_ratio: int = 4):
        super().__init__()
        self.Conv = SepConv(dim=dim)
        self.lif1 = lif()
        self.conv1 = nn.Conv2d(dim, dim * mlp_ratio, kernel_size=3, padding=1, groups=1, bias=False)
        self.bn1 = nn.BatchNorm2d(dim * mlp_ratio)
        self.lif2 = lif()
        self.conv2 = nn.Conv2d(dim * mlp_ratio, dim, kernel_size=3, padding=1, groups=1, bias=False)
        self.bn2 = nn.BatchNorm2d(dim)
        self.mlp_ratio = mlp_ratio

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        T, B, C, H, W = x.shape
        x = self.Conv(x) + x
        x_feat = x
        x = self.bn1(self.conv1(self.lif1(x).flatten(0, 1))).reshape(T, B, self.mlp_ratio * C, H, W)
        x = self.bn2(self.conv2(self.lif2(x).flatten(0, 1))).reshape(T, B, C, H, W)
        return x_feat + x


class MSMLP(nn.Module):
    """``MS_MLP`` on ``[T, B, C, H, W]``: ``fc2_bn(fc2_conv(fc2_lif(fc1_bn(fc1_conv(fc1_lif(x))))))``
    over tokens, Conv1d (bias) ``C -> hidden -> C``; the output is a current."""

    def __init__(self, in_features: int, hidden_features: int):
        super().__init__()
        self.fc1_conv = nn.Conv1d(in_features, hidden_features, kernel_size=1, stride=1)
        self.fc1_bn = nn.BatchNorm1d(hidden_features)
        self.fc1_lif = lif()
        self.fc2_conv = nn.Conv1d(hidden_features, in_features, kernel_size=1, stride=1)
        self.fc2_bn = nn.BatchNorm1d(in_features)
        self.fc2_lif = lif()
        self.c_hidden = hidden_features
        self.c_output = in_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        T, B, C, H, W = x.shape
        N = H * W
        x = self.fc1_lif(x.flatten(3))
        x = self.fc1_bn(self.fc1_conv(x.flatten(0, 1))).reshape(T, B, self.c_hidden, N).contiguous()
        x = self.fc2_conv(self.fc2_lif(x).flatten(0, 1))
        return self.fc2_bn(x).reshape(T, B, C, H, W).contiguous()


class MSAttentionRepConv(nn.Module):
    """``MS_Attention_RepConv_qkv_id``: ``s = head_lif(x)``; ``q, k, v = LIF(BN(RepConv(s)))``
    split into heads ``[T, B, h, N, d]``; ``out = proj_conv(attn_lif((q @ (k^T @ v)) * 0.125))``
    (``proj_conv`` = RepConv + BN; the output is a current)."""

    def __init__(self, dim: int, num_heads: int):
        super().__init__()
        check_heads(dim, num_heads)
        self.dim = dim
        self.num_heads = num_heads
        self.scale = 0.125
        self.head_lif = lif()
        self.q_conv = nn.Sequential(RepConv(dim, dim), nn.BatchNorm2d(dim))
        self.k_conv = nn.Sequential(RepConv(dim, dim), nn.BatchNorm2d(dim))
        self.v_conv = nn.Sequential(RepConv(dim, dim), nn.BatchNorm2d(dim))
        self.q_lif = lif()
        self.k_lif = lif()
        self.v_lif = lif()
        self.attn_lif = lif(ATTENTION_THRESHOLD)
        self.proj_conv = nn.Sequential(RepConv(dim, dim), nn.BatchNorm2d(dim))

    def _heads(self, s: torch.Tensor, T: int, B: int, C: int, N: int) -> torch.Tensor:
        """Spikes ``[T, B, C, H, W] -> [T, B, heads, N, d]``."""
        return (s.flatten(3).transpose(-1, -2).reshape(T, B, N, self.num_heads, C // self.num_heads)
                .permute(0, 1, 3, 2, 4).contiguous())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        T, B, C, H, W = x.shape
        N = H * W
        x = self.head_lif(x)
        q = self.q_conv(x.flatten(0, 1)).reshape(T, B, C, H, W)
        k = self.k_conv(x.flatten(0, 1)).reshape(T, B, C, H, W)
        v = self.v_conv(x.flatten(0, 1)).reshape(T, B, C, H, W)
        q = self._heads(self.q_lif(q), T, B, C, N)
        k = self._heads(self.k_lif(k), T, B, C, N)
        v = self._heads(self.v_lif(v), T, B, C, N)
        x = k.transpose(-2, -1) @ v
        x = (q @ x) * self.scale
        x = x.transpose(3, 4).reshape(T, B, C, N).contiguous()
        x = self.attn_lif(x).reshape(T, B, C, H, W)
        return self.proj_conv(x.flatten(0, 1)).reshape(T, B, C, H, W)


class MSBlock(nn.Module):
    """``MS_Block``: ``x = x + attn(x); x = x + mlp(x)`` (currents; ``drop_path`` has no
    parameters and, as in the official forward, is not applied)."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 4.0):
        super().__init__()
        self.attn = MSAttentionRepConv(dim, num_heads)
        self.drop_path = nn.Identity()
        self.mlp = MSMLP(dim, int(dim * mlp_ratio))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(x)
        return x + self.mlp(x)


class MSDownSampling(nn.Module):
    """``MS_DownSampling``: ``encode_bn(encode_conv(encode_lif(x)))`` (conv with bias); the first
    one reads the image and has no ``encode_lif``."""

    def __init__(self, in_channels: int, embed_dims: int, kernel_size: int, stride: int,
                 padding: int, first_layer: bool):
        super().__init__()
        self.encode_conv = nn.Conv2d(in_channels, embed_dims, kernel_size=kernel_size,
                                     stride=stride, padding=padding)
        self.encode_bn = nn.BatchNorm2d(embed_dims)
        if not first_layer:
            self.encode_lif = lif()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        T, B = x.shape[0], x.shape[1]
        if hasattr(self, "encode_lif"):
            x = self.encode_lif(x)
        x = self.encode_conv(x.flatten(0, 1))
        H, W = x.shape[-2], x.shape[-1]
        return self.encode_bn(x).reshape(T, B, -1, H, W).contiguous()


class MetaSpikeFormer(nn.Module):
    """``Spiking_vit_MetaFormer``: input ``[B, C_in, H, W]`` (repeated ``T`` times), output logits
    ``[B, num_classes]``; with ``kd``, a second head ``head_kd`` and the mean of both in eval.

    Parameters
    ----------
    embed_dim : sequence of 4 int
        Channels of the four stages (the official 15M/31M/55M models: ``[96, 192, 384, 480]``,
        ``[128, 256, 512, 640]``, ``[192, 384, 768, 960]``).
    stage3_depth, stage4_depth : int
        Transformer blocks of stages 3 and 4 (official: 6 and 2).
    """

    def __init__(self, *, img_size: int = 224, in_channels: int = 3, num_classes: int = 1000,
                 embed_dim=(128, 256, 512, 640), num_heads: int = 8, mlp_ratio: int = 4,
                 T: int = 1, stage3_depth: int = 6, stage4_depth: int = 2, kd: bool = False):
        super().__init__()
        if T < 1:
            raise ValueError(f"T must be >= 1, got {T}")
        c1, c2, c3, c4 = (int(c) for c in embed_dim)
        self.num_classes = num_classes
        self.T = T
        self.downsample1_1 = MSDownSampling(in_channels, c1 // 2, 7, 2, 3, first_layer=True)
        self.ConvBlock1_1 = nn.ModuleList([MSConvBlock(c1 // 2, mlp_ratio)])
        self.downsample1_2 = MSDownSampling(c1 // 2, c1, 3, 2, 1, first_layer=False)
        self.ConvBlock1_2 = nn.ModuleList([MSConvBlock(c1, mlp_ratio)])
        self.downsample2 = MSDownSampling(c1, c2, 3, 2, 1, first_layer=False)
        self.ConvBlock2_1 = nn.ModuleList([MSConvBlock(c2, mlp_ratio)])
        self.ConvBlock2_2 = nn.ModuleList([MSConvBlock(c2, mlp_ratio)])
        self.downsample3 = MSDownSampling(c2, c3, 3, 2, 1, first_layer=False)
        self.block3 = nn.ModuleList(MSBlock(c3, num_heads, mlp_ratio) for _ in range(stage3_depth))
        self.downsample4 = MSDownSampling(c3, c4, 3, 1, 1, first_layer=False)
        self.block4 = nn.ModuleList(MSBlock(c4, num_heads, mlp_ratio) for _ in range(stage4_depth))
        self.lif = lif()
        self.head = nn.Linear(c4, num_classes)
        self.kd = kd
        if kd:
            self.head_kd = nn.Linear(c4, num_classes)
        self.apply(init_linear_trunc_normal)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """``[T, B, C_in, H, W] -> [T, B, C4, H/16, W/16]`` currents."""
        x = self.downsample1_1(x)
        for stage in (self.ConvBlock1_1, [self.downsample1_2], self.ConvBlock1_2,
                      [self.downsample2], self.ConvBlock2_1, self.ConvBlock2_2,
                      [self.downsample3], self.block3, [self.downsample4], self.block4):
            for blk in stage:
                x = blk(x)
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = repeat_over_time(x, self.T)
        x = self.forward_features(x).flatten(3).mean(3)
        x_lif = self.lif(x)
        x = self.head(x_lif).mean(0)
        if self.kd:
            x_kd = self.head_kd(x_lif).mean(0)
            if self.training:
                return x, x_kd
            return (x + x_kd) / 2
        return x


__all__ = ["MetaSpikeFormer", "MSBlock", "MSAttentionRepConv", "MSMLP", "MSConvBlock", "SepConv",
           "RepConv", "BNAndPadLayer", "MSDownSampling"]
