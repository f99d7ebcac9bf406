"""Leaf-module handlers: one IR op per call of a convolution, linear layer, batch norm, pool, ...

A handler is registered by module class with :func:`handles` and maps the module (in eval mode)
and the per-sample type of its input to one IR op, or to ``None`` for an identity. Handlers see
per-sample shapes only, so ``Conv2d`` on ``[T*B, C, H, W]`` and a multi-step conv on
``[T, B, C, H, W]`` are the same op; the output keeps the input's layout.

How the tracer treats a module it meets (:func:`classify`):

1. a class with a handler (the class itself or a base whose ``forward`` it keeps): a leaf;
2. a neuron (``neurons.py``: registered, spikingjelly's LIF nodes, or duck-typed): a leaf;
3. containers (``Sequential``, ``ModuleList``, ``ModuleDict``, ``Flatten``, ``Unflatten``) and any
   module outside ``torch.nn``: transparent, its forward is traced function by function (a
   parameter it uses itself is a constant to the tracer: a one-element one becomes a ``Scale``
   factor, anything else fails in the function that uses it, naming the module);
4. any other ``torch.nn`` module (``nn.GELU``, ``nn.LayerNorm``, ``nn.Softmax``, ...):
   ``UnsupportedOpError`` naming the module's path and type.
"""
from __future__ import annotations

from typing import Callable

import numpy as np
from torch import nn

from spikec.errors import UnsupportedOpError
from spikec.frontends.torch.tracer import Tracer, type_name
from spikec.ir import ops as O
from spikec.ir.types import ValueSpec

ModuleHandler = Callable[[nn.Module, str, ValueSpec], "O.Op | None"]
MODULE_HANDLERS: dict[type, ModuleHandler] = {}

TRANSPARENT = (nn.Sequential, nn.ModuleList, nn.ModuleDict, nn.Flatten, nn.Unflatten)


def handles(*classes: type):
    """Register ``fn(module, name, x_spec) -> Op | None`` as the handler of module ``classes``.

    ``name`` is the op name to use (the module's path in the model); ``x_spec`` the per-sample
    type of the input; the op must read the single input ``"x"`` (the tracer renames it).
    Return ``None`` for a module that passes its input through unchanged.
    """
    def wrap(fn):
        for c in classes:
            MODULE_HANDLERS[c] = fn
        return fn
    return wrap


def _arr(t) -> np.ndarray:
    """A parameter or buffer as a float32 numpy array (a copy)."""
    return t.detach().cpu().float().numpy().copy()


def _pair(v) -> tuple[int, int]:
    return (int(v), int(v)) if isinstance(v, int) else (int(v[0]), int(v[1]))


def _unsupported(m: nn.Module, name: str, what: str) -> UnsupportedOpError:
    return UnsupportedOpError(f"{name} ({type_name(m)}): {what}")


@handles(nn.Conv2d)
def _conv2d(m: nn.Conv2d, name: str, x: ValueSpec):
    if m.padding_mode != "zeros":
        raise _unsupported(m, name, f"padding_mode={m.padding_mode!r} (only zero padding)")
    padding = m.padding
    if isinstance(padding, str):
        if padding == "valid":
            padding = (0, 0)
        elif all(d * (k - 1) % 2 == 0 for k, d in zip(m.kernel_size, m.dilation)):
            padding = tuple(d * (k - 1) // 2 for k, d in zip(m.kernel_size, m.dilation))
        else:
            raise _unsupported(m, name, "padding='same' with an even kernel (asymmetric padding)")
    return O.Conv2d(name, ("x",), weight=_arr(m.weight),
                    bias=None if m.bias is None else _arr(m.bias), stride=_pair(m.stride),
                    padding=_pair(padding), dilation=_pair(m.dilation), groups=int(m.groups))


@handles(nn.Conv1d)
def _conv1d(m: nn.Conv1d, name: str, x: ValueSpec):
    if (m.kernel_size != (1,) or m.stride != (1,) or m.groups != 1
            or m.padding not in ((0,), "valid", "same")):
        raise _unsupported(m, name, f"Conv1d with kernel {m.kernel_size}, stride {m.stride}, "
                           f"padding {m.padding}, groups {m.groups}: only kernel-1 Conv1d "
                           "(a linear layer over channels) is supported")
    return O.Linear(name, ("x",), weight=_arr(m.weight)[:, :, 0].copy(),
                    bias=None if m.bias is None else _arr(m.bias), axis=0)


@handles(nn.Linear)
def _linear(m: nn.Linear, name: str, x: ValueSpec):
    return O.Linear(name, ("x",), weight=_arr(m.weight),
                    bias=None if m.bias is None else _arr(m.bias), axis=-1)


@handles(nn.BatchNorm1d, nn.BatchNorm2d)
def _batchnorm(m: nn.modules.batchnorm._BatchNorm, name: str, x: ValueSpec):
    if m.running_mean is None or m.running_var is None:
        raise _unsupported(m, name, "track_running_stats=False (batch statistics at inference)")
    c = m.num_features
    gamma = _arr(m.weight) if m.affine else np.ones(c, np.float32)
    beta = _arr(m.bias) if m.affine else np.zeros(c, np.float32)
    return O.BatchNorm(name, ("x",), mean=_arr(m.running_mean), var=_arr(m.running_var),
                       gamma=gamma, beta=beta, eps=float(m.eps), axis=0)


@handles(nn.MaxPool2d)
def _maxpool(m: nn.MaxPool2d, name: str, x: ValueSpec):
    if m.ceil_mode or _pair(m.dilation) != (1, 1) or m.return_indices:
        raise _unsupported(m, name, "ceil_mode, dilation or return_indices")
    stride = m.stride if m.stride is not None else m.kernel_size
    return O.MaxPool2d(name, ("x",), kernel=_pair(m.kernel_size), stride=_pair(stride),
                       padding=_pair(m.padding))


@handles(nn.AvgPool2d)
def _avgpool(m: nn.AvgPool2d, name: str, x: ValueSpec):
    pad = _pair(m.padding)
    if m.ceil_mode or m.divisor_override is not None or (pad != (0, 0) and not m.count_include_pad):
        raise _unsupported(m, name, "ceil_mode, divisor_override or count_include_pad=False")
    stride = m.stride if m.stride is not None else m.kernel_size
    return O.AvgPool2d(name, ("x",), kernel=_pair(m.kernel_size), stride=_pair(stride), padding=pad)


@handles(nn.AdaptiveAvgPool2d)
def _adaptive_avgpool(m: nn.AdaptiveAvgPool2d, name: str, x: ValueSpec):
    size = m.output_size if isinstance(m.output_size, (tuple, list)) else (m.output_size,) * 2
    hw = x.shape[1:]
    out = tuple(h if s is None else int(s) for s, h in zip(size, hw))
    if len(x.shape) != 3 or any(h % o for h, o in zip(hw, out)):
        raise _unsupported(m, name, f"adaptive average pooling of {x.shape} to {out}: only output "
                           "sizes that divide the input (equal windows) are supported")
    kernel = tuple(h // o for h, o in zip(hw, out))
    return O.AvgPool2d(name, ("x",), kernel=kernel, stride=kernel, padding=(0, 0))


@handles(nn.Identity, nn.Dropout, nn.Dropout1d, nn.Dropout2d)
def _identity(m: nn.Module, name: str, x: ValueSpec):
    return None  # dropout is the identity in eval mode


# spikingjelly's stateless layers (``layer.Conv2d``, ...) compute per sample what their torch
# namesake computes, in both step modes (multi-step: on [T*B, ...] through seq_to_ann_forward);
# its Dropout keeps one mask over time while training and is the identity in eval. Its Flatten,
# SeqToANNContainer and MultiStepContainer are transparent: their bodies are traced.
SPIKINGJELLY_LAYERS = {
    "Conv1d": nn.Conv1d, "Conv2d": nn.Conv2d, "Linear": nn.Linear, "BatchNorm1d": nn.BatchNorm1d,
    "BatchNorm2d": nn.BatchNorm2d, "MaxPool2d": nn.MaxPool2d, "AvgPool2d": nn.AvgPool2d,
    "AdaptiveAvgPool2d": nn.AdaptiveAvgPool2d, "Dropout": nn.Dropout,
    "Dropout2d": nn.Dropout2d, "Identity": nn.Identity,
}
_SPIKINGJELLY_PACKAGES = ("spikingjelly.activation_based.layer", "spikingjelly.clock_driven.layer")


def handler_for(module: nn.Module) -> ModuleHandler | None:
    """The handler of ``module``'s class: registered for it, for a torch base class whose
    ``forward`` it does not override, or for the torch class a known package's layer mirrors."""
    t = type(module)
    if t in MODULE_HANDLERS:
        return MODULE_HANDLERS[t]
    if t.__module__.startswith(_SPIKINGJELLY_PACKAGES) and t.__name__ in SPIKINGJELLY_LAYERS:
        return MODULE_HANDLERS[SPIKINGJELLY_LAYERS[t.__name__]]
    for base in t.__mro__[1:]:
        if base in MODULE_HANDLERS and t.forward is base.forward:
            return MODULE_HANDLERS[base]
    return None


def _leaf(handler: ModuleHandler):
    """Tracer callback of a leaf module: emit the handler's op and bind the module's output."""
    def on_call(tr: Tracer, module: nn.Module, path: str, args, output) -> None:
        x = args[0] if args else None
        v = tr.value(x)
        if v is None:
            return  # a constant input: the output stays untraced
        name = tr.fresh_name(path or type(module).__name__.lower())
        op = handler(module, name, v.spec)
        if op is None:
            tr.bind(output, v)
            return
        op.inputs = (v.name,)
        tr.bind(output, tr.emit(op, v.layout, v.step))
    return on_call


def classify(module: nn.Module, path: str) -> tuple[str, Callable | None]:
    """``("leaf", callback)`` or ``("scope", None)`` for a module about to run; raises
    ``UnsupportedOpError`` for modules the frontend cannot express (see the module docstring)."""
    from spikec.frontends.torch.neurons import neuron_callback

    handler = handler_for(module)
    if handler is not None:
        return "leaf", _leaf(handler)
    cb = neuron_callback(module, path)
    if cb is not None:
        return "leaf", cb
    if isinstance(module, TRANSPARENT):
        return "scope", None
    if type(module).__module__.startswith("torch.nn"):
        raise UnsupportedOpError(
            f"{path or '<model>'} ({type_name(module)}): this torch module is not supported; "
            f"supported: {', '.join(sorted(c.__name__ for c in MODULE_HANDLERS))}, multi-step LIF "
            "neurons and containers (register a handler with spikec.frontends.torch.handles)")
    return "scope", None


__all__ = ["handles", "handler_for", "classify", "MODULE_HANDLERS"]
