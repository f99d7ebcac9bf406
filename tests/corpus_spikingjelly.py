"""Third-party-style models written with spikingjelly 2.0 (``activation_based``), the way its
tutorials and the spiking-transformer repositories build them. Written for spikec's tests after
reading spikingjelly's tutorials and the official Spikformer / Spike-driven Transformer / QKFormer /
SEW-ResNet code; nothing here is spikec's own API, so the frontend meets them as a user's code.
Tiny widths so that the tests run in seconds.
"""
from __future__ import annotations

import torch
import torch.nn as nn
from spikingjelly.activation_based import functional, layer, neuron


def lif(**kw):
    return neuron.LIFNode(tau=2.0, detach_reset=True, **kw)


# ----------------------------------------------------------------------------- Spikformer
class FusedQKVAttention(nn.Module):
    """Spiking self-attention with one fused q/k/v projection, split by ``chunk`` (timm's style),
    ``torch.split`` or ``unbind``; the products as ``@`` or ``einsum``."""

    def __init__(self, dim, heads, split="chunk", einsum=False):
        super().__init__()
        self.heads, self.scale, self.split, self.einsum = heads, 0.125, split, einsum
        self.qkv = layer.Linear(dim, 3 * dim, bias=False)
        self.qkv_bn = layer.BatchNorm1d(3 * dim)
        self.qkv_lif = lif()
        self.attn_lif = lif(v_threshold=0.5)
        self.proj = layer.Linear(dim, dim)
        self.proj_bn = layer.BatchNorm1d(dim)
        self.proj_lif = lif()

    def forward(self, x):  # [T, B, N, C]
        T, B, N, C = x.shape
        qkv = self.qkv(x)
        qkv = self.qkv_bn(qkv.transpose(-1, -2)).transpose(-1, -2)  # BN1d wants channels on axis 1
        qkv = self.qkv_lif(qkv)
        if self.split == "chunk":
            q, k, v = qkv.chunk(3, dim=-1)
        elif self.split == "split":
            q, k, v = torch.split(qkv, C, dim=3)
        else:  # [T, B, N, 3, C] -> three [T, B, N, C]
            q, k, v = qkv.reshape(T, B, N, 3, C).unbind(3)

        def heads(t):
            return t.reshape(T, B, N, self.heads, C // self.heads).permute(0, 1, 3, 2, 4)

        q, k, v = heads(q), heads(k), heads(v)
        if self.einsum:
            attn = torch.einsum("tbhnd,tbhmd->tbhnm", q, k) * self.scale
            x = torch.einsum("tbhnm,tbhmd->tbhnd", attn, v)
        else:
            x = (q @ k.transpose(-2, -1) * self.scale) @ v
        x = self.attn_lif(x.transpose(2, 3).reshape(T, B, N, C))
        x = self.proj(x)
        return self.proj_lif(self.proj_bn(x.transpose(-1, -2)).transpose(-1, -2))


class Mlp(nn.Module):
    def __init__(self, dim, hidden):
        super().__init__()
        self.fc1 = layer.SeqToANNContainer(nn.Linear(dim, hidden))
        self.fc1_lif = lif()
        self.fc2 = layer.SeqToANNContainer(nn.Linear(hidden, dim))
        self.fc2_lif = lif()

    def forward(self, x):
        return self.fc2_lif(self.fc2(self.fc1_lif(self.fc1(x))))


class SpikformerFusedQKV(nn.Module):
    """Conv stem (``layer.*``), encoder blocks with residual ADD, token mean, linear head."""

    def __init__(self, T=2, dim=16, heads=2, depth=1, classes=5, channels=3, split="chunk",
                 einsum=False):
        super().__init__()
        self.T = T
        self.stem = nn.Sequential(
            layer.Conv2d(channels, dim // 2, 3, padding=1, bias=False), layer.BatchNorm2d(dim // 2),
            lif(), layer.MaxPool2d(2, 2),
            layer.Conv2d(dim // 2, dim, 3, padding=1, bias=False), layer.BatchNorm2d(dim),
            lif(), layer.MaxPool2d(2, 2))
        self.blocks = nn.ModuleList(
            nn.ModuleDict({"attn": FusedQKVAttention(dim, heads, split, einsum),
                           "mlp": Mlp(dim, 2 * dim)}) for _ in range(depth))
        self.head = layer.Linear(dim, classes)
        functional.set_step_mode(self, "m")

    def forward(self, img):
        x = self.stem(img.unsqueeze(0).repeat(self.T, 1, 1, 1, 1))  # [T, B, C, H, W]
        x = x.flatten(3).transpose(-1, -2)  # [T, B, N, C]
        for blk in self.blocks:
            x = x + blk["attn"](x)
            x = x + blk["mlp"](x)
        return self.head(x.mean(2)).mean(0)


# ----------------------------------------------------------------------------- conv SNNs
class SEWBlock(nn.Module):
    """SEW residual block: ``connect(conv-bn-sn(conv-bn-sn(x)), x)`` with ADD or IAND."""

    def __init__(self, ch, connect="ADD", groups=1, node=lif):
        super().__init__()
        self.connect = connect
        self.conv = nn.Sequential(
            layer.Conv2d(ch, ch, 3, padding=1, groups=groups, bias=False), layer.BatchNorm2d(ch),
            node(),
            layer.Conv2d(ch, ch, 1, bias=False), layer.BatchNorm2d(ch), node())

    def forward(self, x):
        out = self.conv(x)
        if self.connect == "ADD":
            return out + x
        return (1.0 - x) * out  # IAND: (NOT x) AND out


class SEWNet(nn.Module):
    """A SEW-ResNet-style conv SNN: stem, two SEW blocks (the second depthwise/grouped), adaptive
    average pooling, flatten, linear."""

    def __init__(self, T=2, ch=8, classes=5, connect="ADD", groups=(1, 8), node=lif):
        super().__init__()
        self.T = T
        self.stem = nn.Sequential(layer.Conv2d(3, ch, 3, padding=1, bias=False),
                                  layer.BatchNorm2d(ch), node())
        self.block1 = SEWBlock(ch, connect, groups[0], node)
        self.pool = layer.MaxPool2d(2, 2)
        self.block2 = SEWBlock(ch, connect, groups[1], node)
        self.avgpool = layer.AdaptiveAvgPool2d((1, 1))
        self.flatten = layer.Flatten(1)
        self.fc = layer.Linear(ch, classes)
        functional.set_step_mode(self, "m")

    def forward(self, img):
        x = img.unsqueeze(0).repeat(self.T, 1, 1, 1, 1)
        x = self.block2(self.pool(self.block1(self.stem(x))))
        return self.fc(self.flatten(self.avgpool(x))).mean(0)


class SpikingVGG(nn.Module):
    """Spiking VGG: conv-bn-neuron blocks with max-pooling after the neuron (of spikes) or, with
    ``pool_before_neuron``, in the second stage before it (of currents), dropout in the classifier.
    ``step_mode`` 'm' (input repeated over T) or 's' (one step per call: run it in
    :class:`StepLoop`)."""

    def __init__(self, T=2, ch=8, classes=5, step_mode="m", node=lif, pool_before_neuron=False):
        super().__init__()
        self.T, self.step_mode = T, step_mode
        second = [layer.MaxPool2d(2, 2), node()]
        self.features = nn.Sequential(
            layer.Conv2d(3, ch, 3, padding=1, bias=False), layer.BatchNorm2d(ch), node(),
            layer.MaxPool2d(2, 2),
            layer.Conv2d(ch, 2 * ch, 3, padding=1, bias=False), layer.BatchNorm2d(2 * ch),
            *(second if pool_before_neuron else second[::-1]))
        self.classifier = nn.Sequential(
            layer.Flatten(), layer.Dropout(0.5), layer.Linear(2 * ch * 16, 4 * ch),
            layer.BatchNorm1d(4 * ch), node(), layer.Linear(4 * ch, classes))
        functional.set_step_mode(self, step_mode)

    def forward(self, img):
        if self.step_mode == "m":
            x = img.unsqueeze(0).repeat(self.T, 1, 1, 1, 1)
            return self.classifier(self.features(x)).mean(0)
        return self.classifier(self.features(img))  # one step [B, classes]


class StepLoop(nn.Module):
    """The training-script loop of spikingjelly's tutorials around a single-step network:
    ``for t in range(T): out_fr += net(x)``, ``out_fr / T``, then ``functional.reset_net``;
    ``collect='stack'`` keeps the per-step outputs and averages ``torch.stack(outs)``."""

    def __init__(self, net, T, collect="sum"):
        super().__init__()
        self.net, self.T, self.collect = net, T, collect

    def forward(self, img):
        if self.collect == "stack":
            out = torch.stack([self.net(img) for _ in range(self.T)]).mean(0)
        else:
            out = 0.0
            for _ in range(self.T):
                out += self.net(img)
            out = out / self.T
        functional.reset_net(self.net)
        return out


class ContainerNet(nn.Module):
    """A multi-step network of single-step layers in ``MultiStepContainer`` (one Python loop over
    the steps per container) and stateless ones in ``SeqToANNContainer``."""

    def __init__(self, T=2, ch=8, classes=5):
        super().__init__()
        self.T = T
        self.conv = layer.SeqToANNContainer(nn.Conv2d(3, ch, 3, padding=1, bias=False),
                                            nn.BatchNorm2d(ch))
        self.sn = layer.MultiStepContainer(neuron.IFNode())
        self.conv2 = layer.MultiStepContainer(nn.Conv2d(ch, ch, 3, stride=2, padding=1),
                                              nn.BatchNorm2d(ch), neuron.LIFNode(tau=2.0))
        self.fc = layer.SeqToANNContainer(nn.Flatten(), nn.Linear(ch * 16 * 16 // 4, classes))

    def forward(self, img):
        x = img.unsqueeze(0).repeat(self.T, 1, 1, 1, 1)
        return self.fc(self.conv2(self.sn(self.conv(x)))).mean(0)


class MembraneShortcutNet(nn.Module):
    """MS-ResNet / Spikingformer style: the residual adds real-valued currents in front of the
    next neuron (``x + bn(conv(lif(x)))``), so every conv reads binary spikes."""

    def __init__(self, T=2, ch=8, classes=5):
        super().__init__()
        self.T = T
        self.stem = nn.Sequential(layer.Conv2d(3, ch, 3, 2, 1, bias=False), layer.BatchNorm2d(ch))
        self.block_lif = lif()
        self.block = nn.Sequential(layer.Conv2d(ch, ch, 3, padding=1, bias=False),
                                   layer.BatchNorm2d(ch))
        self.out_lif = lif()
        self.fc = layer.Linear(ch * 64, classes)
        functional.set_step_mode(self, "m")

    def forward(self, img):
        x = self.stem(img.unsqueeze(0).repeat(self.T, 1, 1, 1, 1))
        x = x + self.block(self.block_lif(x))
        return self.fc(self.out_lif(x).flatten(2)).mean(0)


# ----------------------------------------------------------------------------- neurons
NEURON_VARIANTS = {
    "lif": lambda: neuron.LIFNode(tau=2.0),
    "lif_no_decay_input": lambda: neuron.LIFNode(tau=2.0, decay_input=False),
    "lif_soft_reset": lambda: neuron.LIFNode(tau=2.0, v_reset=None),
    "lif_v_reset": lambda: neuron.LIFNode(tau=2.0, v_reset=-0.25),
    "lif_detach_reset": lambda: neuron.LIFNode(tau=2.0, detach_reset=True),
    "lif_tau_3": lambda: neuron.LIFNode(tau=3.0),
    "if": lambda: neuron.IFNode(),
    "if_soft_reset": lambda: neuron.IFNode(v_reset=None),
    "plif": lambda: neuron.ParametricLIFNode(init_tau=2.0),
    "plif_learned": lambda: _learned_plif(),
}


def _learned_plif():
    n = neuron.ParametricLIFNode(init_tau=2.0)
    with torch.no_grad():
        n.w.fill_(0.3)  # a trained tau: 1 / sigmoid(0.3) = 1.744...
    return n


class NeuronNet(nn.Module):
    """conv-bn-neuron, conv-bn-neuron, linear: one neuron variant throughout."""

    def __init__(self, make, T=4, ch=6, classes=5):
        super().__init__()
        self.T = T
        self.body = nn.Sequential(
            layer.Conv2d(3, ch, 3, stride=2, padding=1, bias=False), layer.BatchNorm2d(ch), make(),
            layer.Conv2d(ch, ch, 3, stride=2, padding=1, bias=False), layer.BatchNorm2d(ch), make(),
            layer.Flatten(), layer.Linear(ch * 16, classes))
        functional.set_step_mode(self, "m")

    def forward(self, img):
        return self.body(img.unsqueeze(0).repeat(self.T, 1, 1, 1, 1)).mean(0)


# ----------------------------------------------------------------------------- new-op constructs
class SpikeDrivenAttention(nn.Module):
    """The Spike-driven Transformer's SDSA: ``kv = LIF(sum_tokens(K * V))``, ``out = Q * kv``."""

    def __init__(self, dim=16):
        super().__init__()
        self.q = nn.Sequential(layer.Conv1d(dim, dim, 1, bias=False), layer.BatchNorm1d(dim), lif())
        self.k = nn.Sequential(layer.Conv1d(dim, dim, 1, bias=False), layer.BatchNorm1d(dim), lif())
        self.v = nn.Sequential(layer.Conv1d(dim, dim, 1, bias=False), layer.BatchNorm1d(dim), lif())
        self.kv_lif = lif(v_threshold=0.5)
        functional.set_step_mode(self, "m")

    def forward(self, x):  # [T, B, C, N]
        q, k, v = self.q(x), self.k(x), self.v(x)
        kv = self.kv_lif((k * v).sum(dim=-1, keepdim=True))
        return q * kv


class QKTokenAttention(nn.Module):
    """QKFormer's token attention: Q summed over the channels of a head, a LIF, K masked."""

    def __init__(self, dim=16, heads=2):
        super().__init__()
        self.heads = heads
        self.q = nn.Sequential(layer.Conv1d(dim, dim, 1, bias=False), layer.BatchNorm1d(dim), lif())
        self.k = nn.Sequential(layer.Conv1d(dim, dim, 1, bias=False), layer.BatchNorm1d(dim), lif())
        self.attn_lif = lif(v_threshold=0.5)
        functional.set_step_mode(self, "m")

    def forward(self, x):  # [T, B, C, N]
        T, B, C, N = x.shape
        q = self.q(x).reshape(T, B, self.heads, C // self.heads, N)
        k = self.k(x).reshape(T, B, self.heads, C // self.heads, N)
        attn = self.attn_lif(torch.sum(q, dim=3, keepdim=True))
        return (attn * k).reshape(T, B, C, N)


class Wrap(nn.Module):
    """``[B, C, H, W]`` image -> ``[T, B, C, N]`` tokens -> ``block`` -> mean."""

    def __init__(self, block, T=2):
        super().__init__()
        self.block, self.T = block, T

    def forward(self, img):
        x = img.unsqueeze(0).repeat(self.T, 1, 1, 1, 1).flatten(3)
        return self.block(x).mean(-1).mean(0)
