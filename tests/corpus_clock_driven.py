"""Third-party-style models on spikingjelly 0.0.0.0.12's ``clock_driven`` API, the one the official
Spikformer, Spike-driven Transformer and QKFormer repositories import. Written for spikec's tests
after reading those repositories (layer names and forward follow the official CIFAR Spikformer);
tiny widths. Import it only with spikingjelly 0.0.0.0.12 first on ``sys.path`` (``.venv/sj012``,
made by scripts/setup.sh): 2.0 has no ``clock_driven``.

The official code builds its neurons with ``backend='cupy'``, which needs CuPy even to construct;
here they are built on 'torch' and switched to 'cupy' afterwards (:func:`as_trained`), which is
what a model pickled on a GPU machine holds. The tracer runs them on 'torch'.
"""
from __future__ import annotations

import torch
import torch.nn as nn
from spikingjelly.clock_driven import functional, layer, neuron


def msl(**kw):
    return neuron.MultiStepLIFNode(tau=2.0, detach_reset=True, backend="torch", **kw)


class SSA(nn.Module):
    def __init__(self, dim, heads):
        super().__init__()
        self.heads, self.scale = heads, 0.125
        for n in ("q", "k", "v"):
            setattr(self, f"{n}_linear", nn.Linear(dim, dim))
            setattr(self, f"{n}_bn", nn.BatchNorm1d(dim))
            setattr(self, f"{n}_lif", msl())
        self.attn_lif = msl(v_threshold=0.5)
        self.proj_linear = nn.Linear(dim, dim)
        self.proj_bn = nn.BatchNorm1d(dim)
        self.proj_lif = msl()

    def _branch(self, x, n):
        T, B, N, C = x.shape
        y = getattr(self, f"{n}_linear")(x.flatten(0, 1))
        y = getattr(self, f"{n}_bn")(y.transpose(-1, -2)).transpose(-1, -2).reshape(T, B, N, C)
        y = getattr(self, f"{n}_lif")(y)
        return y.reshape(T, B, N, self.heads, C // self.heads).permute(0, 1, 3, 2, 4).contiguous()

    def forward(self, x):
        T, B, N, C = x.shape
        q, k, v = (self._branch(x, n) for n in ("q", "k", "v"))
        x = (q @ k.transpose(-2, -1) * self.scale) @ v
        x = self.attn_lif(x.transpose(2, 3).reshape(T, B, N, C).contiguous())
        x = self.proj_bn(self.proj_linear(x.flatten(0, 1)).transpose(-1, -2)).transpose(-1, -2)
        return self.proj_lif(x.reshape(T, B, N, C))


class MLP(nn.Module):
    def __init__(self, dim, hidden):
        super().__init__()
        self.fc1_linear, self.fc1_bn = nn.Linear(dim, hidden), nn.BatchNorm1d(hidden)
        self.fc1_lif = msl()
        self.fc2_linear, self.fc2_bn = nn.Linear(hidden, dim), nn.BatchNorm1d(dim)
        self.fc2_lif = msl()

    def forward(self, x):
        T, B, N, C = x.shape
        x = self.fc1_bn(self.fc1_linear(x.flatten(0, 1)).transpose(-1, -2)).transpose(-1, -2)
        x = self.fc1_lif(x.reshape(T, B, N, -1))
        x = self.fc2_bn(self.fc2_linear(x.flatten(0, 1)).transpose(-1, -2)).transpose(-1, -2)
        return self.fc2_lif(x.reshape(T, B, N, C))


class ClockDrivenSpikformer(nn.Module):
    """The CIFAR Spikformer's layout at a tiny size: SPS stem with ``SeqToANNContainer``, blocks
    ``x = x + attn(x); x = x + mlp(x)``, token and time means, head. ``plif`` puts
    ``MultiStepParametricLIFNode`` in the stem."""

    def __init__(self, T=2, dim=16, heads=2, classes=5, plif=False):
        super().__init__()
        self.T = T
        node = (lambda: neuron.MultiStepParametricLIFNode(init_tau=2.0, detach_reset=True,
                                                         backend="torch")) if plif else msl
        self.proj_conv = layer.SeqToANNContainer(nn.Conv2d(3, dim // 2, 3, padding=1, bias=False),
                                                 nn.BatchNorm2d(dim // 2))
        self.proj_lif = node()
        self.maxpool = layer.SeqToANNContainer(nn.MaxPool2d(3, 2, 1))
        self.proj_conv1 = layer.SeqToANNContainer(
            nn.Conv2d(dim // 2, dim, 3, padding=1, bias=False), nn.BatchNorm2d(dim))
        self.proj_lif1 = node()
        self.maxpool1 = layer.SeqToANNContainer(nn.MaxPool2d(3, 2, 1))
        self.attn, self.mlp = SSA(dim, heads), MLP(dim, 2 * dim)
        self.head = nn.Linear(dim, classes)

    def forward(self, img):
        x = img.unsqueeze(0).repeat(self.T, 1, 1, 1, 1)
        x = self.maxpool(self.proj_lif(self.proj_conv(x)))
        x = self.maxpool1(self.proj_lif1(self.proj_conv1(x)))
        x = x.flatten(-2).transpose(-1, -2)  # [T, B, N, C]
        x = x + self.attn(x)
        x = x + self.mlp(x)
        return self.head(x.mean(2).mean(0))


class SingleStepContainerNet(nn.Module):
    """0.0.0.0.12's single-step ``LIFNode``/``IFNode`` inside ``MultiStepContainer`` (a Python loop
    over the steps, ``torch.cat`` of the ``unsqueeze(0)``-ed outputs)."""

    def __init__(self, T=2, ch=6, classes=5):
        super().__init__()
        self.T = T
        self.conv = layer.SeqToANNContainer(nn.Conv2d(3, ch, 3, 2, 1, bias=False),
                                            nn.BatchNorm2d(ch))
        self.sn = layer.MultiStepContainer(neuron.LIFNode(tau=2.0))
        self.conv2 = layer.SeqToANNContainer(nn.Conv2d(ch, ch, 3, 2, 1, bias=False),
                                             nn.BatchNorm2d(ch))
        self.sn2 = layer.MultiStepContainer(neuron.IFNode())
        self.fc = nn.Linear(ch * 16, classes)

    def forward(self, img):
        x = img.unsqueeze(0).repeat(self.T, 1, 1, 1, 1)
        x = self.sn2(self.conv2(self.sn(self.conv(x))))
        return self.fc(x.flatten(2)).mean(0)


def as_trained(model: nn.Module) -> nn.Module:
    """Switch every multi-step neuron to the 'cupy' backend the official code trains with."""
    for m in model.modules():
        if hasattr(m, "backend"):
            m.backend = "cupy"
    return model


def on_torch(model: nn.Module) -> nn.Module:
    for m in model.modules():
        if hasattr(m, "backend"):
            m.backend = "torch"
    return model


reset_net = functional.reset_net
