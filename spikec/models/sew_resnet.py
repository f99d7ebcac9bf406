"""SEW-ResNet-18/34 (Fang et al., NeurIPS 2021), as a reference torch model.

Written from spikingjelly 2.0's ``activation_based/model/sew_resnet.py`` (``SEWResNet`` with
``BasicBlock``; the model zoo builds it from ``layer.Conv2d``/``layer.BatchNorm2d`` in multi-step
mode): the same module names as torchvision's ResNet plus the neurons (``sn1``, ``sn2``,
``downsample_sn``), so that its checkpoints, and torchvision's ResNet-18/34 weights that
spikingjelly's ``pretrained=True`` loads, load with ``strict=True``. Here every layer is a plain
``nn`` module applied to ``[T*B, ...]`` (what spikingjelly's multi-step wrappers do inside).

Input ``[B, 3, H, W]`` (repeated ``T`` times; ``[T, B, 3, H, W]`` is taken as is), output logits
``[B, num_classes]``: the mean over T of spikingjelly's per-step output ``[T, B, num_classes]``.

Element-wise joins (``cnf``) of the shortcut spikes ``identity`` and the branch spikes ``out``,
as spikingjelly's ``sew_function(identity, out, cnf)`` in ``BasicBlock``:

* ``ADD``:  ``identity + out`` (counts 0, 1, 2, ... grow through the stages);
* ``AND``:  ``identity * out``;
* ``IAND``: ``identity * (1 - out)`` (binary everywhere).

Neurons: the SEW paper trains IF neurons (spikingjelly ``IFNode``, ``v_threshold=1``, hard reset
to 0, ``detach_reset=True``): ``neuron="if"``; ``neuron="lif"`` builds ``LIFNode(tau=2)``.
"""
from __future__ import annotations

import torch
from torch import nn

from spikec.models import ZOO_CHOICES
from spikec.models.lif import MultiStepLIF
from spikec.models.zoo import MultiStepIF, lif, repeat_over_time

CONNECT_FUNCTIONS = ZOO_CHOICES["cnf"]
NEURONS = ZOO_CHOICES["neuron"]
LAYERS = {18: (2, 2, 2, 2), 34: (3, 4, 6, 3)}
"""BasicBlocks per stage of SEW-ResNet-18 and -34."""


def sew_join(identity: torch.Tensor, out: torch.Tensor, cnf: str) -> torch.Tensor:
    """spikingjelly's ``sew_function(identity, out, cnf)`` (see the module docstring)."""
    if cnf == "ADD":
        return identity + out
    if cnf == "AND":
        return identity * out
    if cnf == "IAND":
        return identity * (1.0 - out)
    raise ValueError(f"cnf must be one of {CONNECT_FUNCTIONS}, got {cnf!r}")


def _neuron(kind: str) -> MultiStepLIF:
    if kind == "if":
        return MultiStepIF(v_threshold=1.0, v_reset=0.0, detach_reset=True)
    if kind == "lif":
        return lif()
    raise ValueError(f"neuron must be one of {NEURONS}, got {kind!r}")


def _per_step(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Apply a single-step layer to ``[T, B, ...]`` as spikingjelly's multi-step wrappers do."""
    T, B = x.shape[0], x.shape[1]
    y = module(x.flatten(0, 1))
    return y.reshape(T, B, *y.shape[1:])


class BasicBlock(nn.Module):
    """``sew_join(identity, sn2(bn2(conv2(sn1(bn1(conv1(x)))))))`` with 3x3 convs (no bias);
    when the block changes stride or width, ``identity = downsample_sn(downsample(x))``
    (``downsample`` = 1x1 conv + BN)."""

    expansion = 1

    def __init__(self, inplanes: int, planes: int, stride: int, cnf: str, neuron: str):
        super().__init__()
        if cnf not in CONNECT_FUNCTIONS:
            raise ValueError(f"cnf must be one of {CONNECT_FUNCTIONS}, got {cnf!r}")
        self.conv1 = nn.Conv2d(inplanes, planes, kernel_size=3, stride=stride, padding=1,
                               bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.sn1 = _neuron(neuron)
        self.conv2 = nn.Conv2d(planes, planes, kernel_size=3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.sn2 = _neuron(neuron)
        self.downsample = None
        if stride != 1 or inplanes != planes:
            self.downsample = nn.Sequential(
                nn.Conv2d(inplanes, planes, kernel_size=1, stride=stride, bias=False),
                nn.BatchNorm2d(planes))
            self.downsample_sn = _neuron(neuron)
        self.stride = stride
        self.cnf = cnf

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x
        out = self.sn1(_per_step(lambda y: self.bn1(self.conv1(y)), x))
        out = self.sn2(_per_step(lambda y: self.bn2(self.conv2(y)), out))
        if self.downsample is not None:
            identity = self.downsample_sn(_per_step(self.downsample, x))
        return sew_join(identity, out, self.cnf)

    def extra_repr(self) -> str:
        return f"cnf={self.cnf}"


class SEWResNet(nn.Module):
    """SEW-ResNet with BasicBlocks: ``conv1`` (7x7 s2, 3 -> 64), ``bn1``, ``sn1``, ``maxpool``
    (3, s2), ``layer1..layer4`` (64, 128, 256, 512 channels; stride 2 from ``layer2``),
    ``avgpool`` (global), ``fc``.

    Parameters
    ----------
    layers : sequence of 4 int
        BasicBlocks per stage (:data:`LAYERS`: ResNet-18 ``(2, 2, 2, 2)``, -34 ``(3, 4, 6, 3)``).
    cnf : {"ADD", "AND", "IAND"}
        The element-wise join of every block.
    neuron : {"if", "lif"}
    T : int
        Time steps a static image is repeated over.
    """

    def __init__(self, *, layers=(2, 2, 2, 2), img_size: int = 224, in_channels: int = 3,
                 num_classes: int = 1000, cnf: str = "ADD", neuron: str = "if", T: int = 4,
                 zero_init_residual: bool = False):
        super().__init__()
        if T < 1:
            raise ValueError(f"T must be >= 1, got {T}")
        if len(layers) != 4:
            raise ValueError(f"layers must have 4 entries, got {layers}")
        self.T = T
        self.num_classes = num_classes
        self.inplanes = 64
        self.conv1 = nn.Conv2d(in_channels, 64, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.sn1 = _neuron(neuron)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        for i, (planes, blocks) in enumerate(zip((64, 128, 256, 512), layers)):
            setattr(self, f"layer{i + 1}",
                    self._make_layer(planes, int(blocks), 1 if i == 0 else 2, cnf, neuron))
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(512 * BasicBlock.expansion, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.constant_(m.weight, 1)
                nn.init.constant_(m.bias, 0)
        if zero_init_residual:
            for m in self.modules():
                if isinstance(m, BasicBlock):
                    nn.init.constant_(m.bn2.weight, 0)

    def _make_layer(self, planes: int, blocks: int, stride: int, cnf: str,
                    neuron: str) -> nn.Sequential:
        layers = [BasicBlock(self.inplanes, planes, stride, cnf, neuron)]
        self.inplanes = planes * BasicBlock.expansion
        layers += [BasicBlock(self.inplanes, planes, 1, cnf, neuron) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """``[T, B, 3, H, W] -> [T, B, 512]`` (global average of the last spikes or counts)."""
        x = self.sn1(_per_step(lambda y: self.bn1(self.conv1(y)), x))
        x = _per_step(self.maxpool, x)
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return torch.flatten(_per_step(self.avgpool, x), 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() < 5:
            x = repeat_over_time(x, self.T)
        return _per_step(self.fc, self.forward_features(x)).mean(0)


__all__ = ["SEWResNet", "BasicBlock", "sew_join", "CONNECT_FUNCTIONS", "NEURONS", "LAYERS"]
