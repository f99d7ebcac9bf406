"""Neuron modules: which modules are multi-step LIF neurons, and their IR ``LIF`` fields.

A module is a neuron when

1. its class was registered with :func:`register_neuron` (spikec's own ``MultiStepLIF`` is);
2. it is one of spikingjelly's LIF nodes, matched by qualified class name so that spikingjelly
   need not be installed: ``spikingjelly.activation_based.neuron.LIFNode`` (``step_mode='m'``)
   and ``spikingjelly.clock_driven.neuron.MultiStepLIFNode``; or
3. it *looks like* one (duck typing): no parameters of its own, numeric attributes ``tau``,
   ``v_threshold``, ``v_reset`` (or None) and a bool ``decay_input``, and multi-step, i.e.
   ``step_mode == 'm'`` or, without a ``step_mode``, a class name starting with ``MultiStep``.

Recognition is then confirmed **by behaviour**: every neuron is run once on a probe sequence
before the trace, and every call during the trace is compared with the IR's LIF (spikingjelly's
equations, ``spikec.interp.lif_float``) on the very input it received. A module whose spikes
differ on more than :data:`TIE_TOLERANCE` of the elements is refused with an
``UnsupportedOpError``; exact implementations of spikingjelly's arithmetic differ on none.

snnTorch's neurons (``Leaky``, ...) are refused with the reason: they are single-step modules
called in a Python loop over time, and ``Leaky``'s default subtract reset removes the threshold
*after* the decay (``mem = beta * mem + x - S[t-1] * thr``), which the IR's LIF (reset, then
decay) cannot express exactly.
"""
from __future__ import annotations

import contextlib
import inspect
import math
import numbers
from typing import Callable

import numpy as np
import torch
from torch import nn

from spikec.errors import UnsupportedOpError
from spikec.frontends.torch.tracer import Layout, Tracer, type_name
from spikec.interp import lif_float
from spikec.ir import ops as O
from spikec.models.lif import MultiStepLIF

TIE_TOLERANCE = 1e-3
"""Largest fraction of spikes a recognized neuron may differ from the IR's LIF by (float ties)."""

PROBE_STEPS = 8

NeuronReader = Callable[[nn.Module], dict]
"""``reader(module) -> dict`` of ``spikec.ir.LIF`` fields (tau, v_threshold, v_reset,
decay_input, fire_on); raises ``UnsupportedOpError`` for a configuration it cannot express."""

NEURONS: dict[type, NeuronReader] = {}


def _number(m: nn.Module, name: str) -> float:
    v = getattr(m, name)
    if isinstance(v, torch.Tensor) and v.numel() == 1:
        v = v.item()
    if isinstance(v, bool) or not isinstance(v, numbers.Real):
        raise UnsupportedOpError(f"{type_name(m)}: {name}={v!r} is not a number")
    return float(v)


def _threshold_and_reset(m: nn.Module) -> dict:
    return {"v_threshold": _number(m, "v_threshold"),
            "v_reset": None if m.v_reset is None else _number(m, "v_reset"), "fire_on": ">="}


def lif_attributes(m: nn.Module) -> dict:
    """LIF fields from spikingjelly-style attributes ``tau``, ``v_threshold``, ``v_reset``,
    ``decay_input`` (firing on ``>=``)."""
    return {"tau": _number(m, "tau"), "decay_input": bool(getattr(m, "decay_input", True)),
            **_threshold_and_reset(m)}


def register_neuron(cls: type, reader: NeuronReader = lif_attributes) -> type:
    """Declare ``cls`` a multi-step LIF neuron (input and output ``[T, B, ...]``) whose IR fields
    ``reader`` reads. Its behaviour is still checked against the IR's LIF during the trace.
    Usable as a class decorator."""
    NEURONS[cls] = reader
    return cls


def if_attributes(m: nn.Module) -> dict:
    """LIF fields of an integrate-and-fire neuron (``H = V + X``): ``tau = inf`` without input
    decay, so that ``V - (V - v_reset) / tau = V``."""
    return {"tau": math.inf, "decay_input": False, **_threshold_and_reset(m)}


def plif_attributes(m: nn.Module) -> dict:
    """LIF fields of spikingjelly's ``ParametricLIFNode``: ``tau = 1 / sigmoid(w)`` from its
    learned parameter ``w`` (``init_tau = 2`` gives ``w = 0``, ``tau = 2`` exactly)."""
    w = getattr(m, "w", None)
    if not isinstance(w, torch.Tensor) or w.numel() != 1:
        raise UnsupportedOpError(f"{type_name(m)}: expected one learned parameter w, got {w!r}")
    rate = float(torch.sigmoid(w.detach().double()).item())
    if not 0.0 < rate <= 1.0:
        raise UnsupportedOpError(f"{type_name(m)}: w={float(w)} gives no finite tau")
    return {"tau": 1.0 / rate, "decay_input": bool(getattr(m, "decay_input", True)),
            **_threshold_and_reset(m)}


def _from_v_reset(reader: NeuronReader) -> NeuronReader:
    """spikingjelly's hard-reset neurons start at ``v = v_reset`` (the IR's LIF at 0). Measured
    from ``v_reset`` (``V' = V - v_reset``) the same neuron is the IR's LIF with ``v_reset = 0`` and
    threshold ``v_threshold - v_reset``: charge, fire and reset are unchanged, every leak term reads
    ``V - v_reset``, and the state starts at ``V' = 0``."""
    def read(m: nn.Module) -> dict:
        fields = reader(m)
        vr = fields["v_reset"]
        if vr is not None and vr != 0.0:
            fields = {**fields, "v_threshold": fields["v_threshold"] - vr, "v_reset": 0.0}
        return fields
    return read


_SPIKINGJELLY_NEURONS = {
    "LIFNode": _from_v_reset(lif_attributes), "MultiStepLIFNode": _from_v_reset(lif_attributes),
    "IFNode": _from_v_reset(if_attributes), "MultiStepIFNode": _from_v_reset(if_attributes),
    "ParametricLIFNode": _from_v_reset(plif_attributes),
    "MultiStepParametricLIFNode": _from_v_reset(plif_attributes),
}
_SPIKINGJELLY_PACKAGES = (
    "spikingjelly.activation_based.neuron", "spikingjelly.clock_driven.neuron")


def is_single_step(m: nn.Module) -> bool:
    """Whether neuron ``m`` takes one time step per call (``[B, ...]``): spikingjelly 2.0's
    ``step_mode='s'``, or 0.0.0.0.12's ``LIFNode``/``IFNode`` (not ``MultiStep*``)."""
    mode = getattr(m, "step_mode", None)
    if mode is not None:
        return mode == "s"
    t = type(m)
    return (t.__module__.startswith("spikingjelly.clock_driven")
            and not t.__name__.startswith("MultiStep"))


register_neuron(MultiStepLIF)


def _looks_like_lif(m: nn.Module) -> bool:
    if any(p is not None for p in m._parameters.values()):
        return False
    if not all(hasattr(m, a) for a in ("tau", "v_threshold", "v_reset", "decay_input")):
        return False
    step_mode = getattr(m, "step_mode", None)
    return step_mode == "m" or (step_mode is None and type(m).__name__.startswith("MultiStep"))


def reader_for(module: nn.Module) -> NeuronReader | None:
    """How to read ``module`` as a neuron, or None when it is not one; raises
    ``UnsupportedOpError`` for neurons of known packages the IR cannot express."""
    t = type(module)
    if t in NEURONS:
        return NEURONS[t]
    if t.__module__.startswith(_SPIKINGJELLY_PACKAGES) and t.__name__ in _SPIKINGJELLY_NEURONS:
        return _SPIKINGJELLY_NEURONS[t.__name__]
    if t.__module__.split(".")[0] == "snntorch":
        raise UnsupportedOpError(_snntorch_reason(module))
    for base in t.__mro__[1:]:
        if base in NEURONS and t.forward is base.forward:
            return NEURONS[base]
    return lif_attributes if _looks_like_lif(module) else None


def _snntorch_reason(m: nn.Module) -> str:
    name = type(m).__name__
    why = ("snnTorch neurons are single-step modules called once per time step in a Python loop, "
           "while spikec traces multi-step models ([T, B, ...] tensors)")
    if name == "Leaky":
        beta = getattr(m, "beta", "?")
        beta = beta.item() if isinstance(beta, torch.Tensor) and beta.numel() == 1 else beta
        why += (f"; and Leaky(beta={beta}, reset_mechanism={getattr(m, 'reset_mechanism', '?')!r})"
                " subtracts the threshold after the decay (mem = beta*mem + x - S[t-1]*thr) and "
                "fires on mem > thr, which the IR's LIF (reset, then decay) cannot express exactly")
    return f"{type_name(m)}: not supported: {why}"


# ----------------------------------------------------------------------------- behaviour
def check_behaviour(op: O.LIF, x: torch.Tensor, y, where: str) -> None:
    """Raise unless ``y`` (the module's output for ``x``, ``[T, ...]``) is the IR LIF's output."""
    if not isinstance(y, torch.Tensor) or tuple(y.shape) != tuple(x.shape):
        raise UnsupportedOpError(f"{where}: looks like a LIF neuron but does not return one "
                                 "spike tensor of its input's shape")
    xs = x.detach().cpu().numpy()
    expected = lif_float(op, xs)
    got = y.detach().cpu().numpy().astype(xs.dtype)
    bad = int(np.count_nonzero(expected != got))
    if bad > TIE_TOLERANCE * max(expected.size, 1):
        fields = ", ".join(f"{k}={v}" for k, v in op.attributes().items())
        raise UnsupportedOpError(
            f"{where}: recognized as a multi-step LIF ({fields}) but its output differs from "
            f"spikingjelly's LIF on {bad} of {expected.size} elements; spikec cannot express this "
            "neuron (register a reader with spikec.frontends.torch.register_neuron if its fields "
            "are read wrongly)")


def _probe(m: nn.Module, fields: dict, where: str) -> None:
    gen = torch.Generator().manual_seed(1)
    vth = abs(fields["v_threshold"]) or 1.0
    x = (torch.rand((PROBE_STEPS, 3, 32), generator=gen) * 3.0 - 0.5) * vth
    _reset(m)
    with torch.no_grad():
        y = torch.stack([m(xt) for xt in x]) if is_single_step(m) else m(x)
    _reset(m)
    check_behaviour(O.LIF("probe", ("x",), **fields), x, y, where)


def _reset(m: nn.Module) -> None:
    """Call spikingjelly's ``reset()`` (memory modules keep ``v`` between calls) when ``m`` has a
    ``reset`` that takes no arguments."""
    fn = getattr(m, "reset", None)
    if not callable(fn):
        return
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return
    if all(p.default is not p.empty or p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD) for p in params):
        fn()


@contextlib.contextmanager
def prepare_neurons(model: nn.Module, paths: dict[int, str]):
    """Before a trace: switch spikingjelly neurons to the torch backend, reset their state and
    probe each one's behaviour; afterwards reset them and restore their backends."""
    neurons = []
    for m in model.modules():
        reader = reader_for(m)
        if reader is not None:
            neurons.append((m, reader))
    backends = []
    try:
        for m, reader in neurons:
            where = f"{paths.get(id(m), '?')} ({type_name(m)})"
            if getattr(m, "backend", "torch") != "torch":
                backends.append((m, m.backend))
                m.backend = "torch"  # cupy kernels need a GPU; the torch backend is equivalent
            _probe(m, reader(m), where)
        yield
    finally:
        for m, _ in neurons:
            _reset(m)
        for m, backend in backends:
            m.backend = backend


def neuron_callback(module: nn.Module, path: str):
    """The tracer callback of a neuron module (None if ``module`` is not a neuron)."""
    reader = reader_for(module)
    if reader is None:
        return None
    fields = reader(module)
    where = f"{path} ({type_name(module)})"
    single = is_single_step(module)

    def on_call(tr: Tracer, m: nn.Module, path_: str, args, output) -> None:
        v = tr.value(args[0] if args else None)
        if v is None:
            return
        if single:
            tr.bind(output, _single_step(tr, m, where, fields, v, args[0], output, path))
            return
        if v.layout not in (Layout.TB, Layout.MERGED):
            raise UnsupportedOpError(f"{where}: a multi-step neuron needs a [T, B, ...] input, "
                                     f"got a {v.layout.value} tensor (repeat the input over time "
                                     "and reshape to [T, B, ...] before the neuron)")
        op = O.LIF(tr.fresh_name(path), (v.name,), **fields)
        check_behaviour(op, args[0], output, where)
        if v.layout is Layout.MERGED:
            tr.per_sample_neurons.append(path)
        tr.bind(output, tr.emit(op, v.layout))

    return on_call


def _single_step(tr: Tracer, m: nn.Module, where: str, fields: dict, v, x: torch.Tensor,
                 y, path: str):
    """One call of a single-step neuron: step ``t`` = the number of calls before this one. Every
    call must read the same IR value (at step ``t``); its output is checked against the IR's LIF
    run over the inputs of all the calls so far."""
    if v.layout not in (Layout.STATIC, Layout.STEP):
        raise UnsupportedOpError(
            f"{where}: a neuron in single-step mode receives a {v.layout.value} tensor; run it on "
            "one step [B, ...] at a time or set step_mode='m' "
            "(spikingjelly.activation_based.functional.set_step_mode(net, 'm'))")
    _, inputs = tr.single_step_calls.setdefault(id(m), (where, []))
    t = len(inputs)
    if v.layout is Layout.STEP and v.step != t:
        raise UnsupportedOpError(f"{where}: call {t + 1} of this single-step neuron reads the "
                                 f"value of time step {v.step}")
    inputs.append(x.detach().clone())
    op = O.LIF(tr.fresh_name(path), (v.name,), **fields)
    xs = torch.stack(inputs)
    expected = lif_float(op, xs.cpu().numpy())[-1]
    if not isinstance(y, torch.Tensor) or tuple(y.shape) != tuple(x.shape):
        raise UnsupportedOpError(f"{where}: looks like a LIF neuron but does not return one "
                                 "spike tensor of its input's shape")
    bad = int(np.count_nonzero(expected != y.detach().cpu().numpy().astype(expected.dtype)))
    if bad > TIE_TOLERANCE * max(expected.size, 1):
        raise UnsupportedOpError(f"{where}: at time step {t} its output differs from the IR's "
                                 f"LIF ({op.attributes()}) on {bad} of {expected.size} elements")
    out = tr.emit(op, Layout.STEP, step=t)
    first = tr.single_step_names.setdefault(id(m), out.name)
    if out.name != first:
        raise UnsupportedOpError(f"{where}: this single-step neuron reads a different value at "
                                 f"time step {t} than at step 0 (a Python loop whose body "
                                 "changes from step to step cannot be expressed)")
    return out


__all__ = ["register_neuron", "lif_attributes", "if_attributes", "plif_attributes", "is_single_step",
           "reader_for", "neuron_callback", "check_behaviour",
           "prepare_neurons", "TIE_TOLERANCE", "NEURONS"]
