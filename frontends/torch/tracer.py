"""Concrete tracing of a PyTorch spiking model into spikec's float IR.

``torch.fx`` cannot trace models like the official Spikformer (``T, B, C, H, W = x.shape`` and
shape arithmetic everywhere), so the tracer *runs* the model once on a real example batch and
records what happens:

* a ``torch.overrides.TorchFunctionMode`` sees every torch function and Tensor method called in
  Python (``reshape``, ``flatten``, ``permute``, ``@``, ``+``, ``*``, ``mean``, ...);
* global module forward hooks make **leaf modules** atomic (convolutions, linear layers, batch
  norms, pools, neurons, identities): while a leaf runs, the function mode records nothing, and
  the forward hook turns the call into one IR op (``modules.py``, ``neurons.py``). Every other
  module (``Block``, an attention module, ``nn.Sequential``) is transparent: its body is recorded.

Tensors are mapped to IR values by identity (``id`` plus a weak reference, so that a reused ``id``
never aliases a dead tensor and traced activations are not kept alive).

Layouts
-------
The IR has no batch or time axis: its shapes are per sample and per time step. The tracer tracks
the leading axes of every traced tensor (its :class:`Layout`) and strips them:

``STATIC``  ``[B, ...]`` before the time repeat: the same value at every step (the image)
``T1``      ``[1, B, ...]``: ``x.unsqueeze(0)`` of a static value, waiting for ``.repeat(T, ...)``
``TB``      ``[T, B, ...]``: one value per step (what multi-step neurons read and write)
``MERGED``  ``[T*B, ...]``: after ``flatten(0, 1)`` (what convolutions read)
``FINAL``   ``[B, ...]`` after ``mean(0)`` over time (rate ``final`` in the IR)
``STEP``    ``[B, ...]``: the value at one time step ``step`` (``x_seq[t]``, a single-step neuron)
``ACCUM``   ``[B, ...]``: a Python-loop running sum over steps ``0 .. step-1`` of one value

Reshapes are classified by their concrete output shape: ``(T, B, ...)`` is ``TB``, ``(T*B, ...)``
is ``MERGED``, ``(B, ...)`` keeps a static/final layout. The example batch size ``B`` is chosen
different from ``T`` (2, or 3 when T = 2) so that the two leading axes cannot be confused.

Python loops over time
----------------------
Single-step models (spikingjelly ``step_mode='s'``, ``MultiStepContainer``) run one step per call
in a Python loop. A ``STEP`` value carries its step index; the IR value is the same at every step,
so an op recorded at step ``t > 0`` that equals one recorded before (same type, inputs and fields)
*is* that op (common-subexpression elimination, sound because every IR op is a function of its
input sequences). ``torch.stack`` of the steps ``0 .. T-1`` of one value is that value ``[T, B]``;
``out = out + y`` over the steps is a running sum, read as ``T * TimeMean(y)``.
"""
from __future__ import annotations

import enum
import hashlib
import weakref
from dataclasses import dataclass, replace

import numpy as np
import torch
from torch import nn
from torch.overrides import TorchFunctionMode, resolve_name

from spikec.errors import ShapeError, SpikecError, UnsupportedOpError
from spikec.ir import ops as O
from spikec.ir.graph import Graph
from spikec.ir.types import ValueSpec


class Layout(enum.Enum):
    """Leading (batch/time) axes of a traced tensor; see the module docstring."""

    STATIC = "[B]"
    T1 = "[1,B]"
    TB = "[T,B]"
    MERGED = "[T*B]"
    FINAL = "[B] final"
    STEP = "[B] at one step"
    ACCUM = "[B] sum over steps"

    @property
    def lead(self) -> int:
        """Number of leading torch axes that are not part of the per-sample shape."""
        return 2 if self in (Layout.T1, Layout.TB) else 1


@dataclass(frozen=True)
class TracedValue:
    """What a traced tensor holds: IR value ``name`` with per-sample type ``spec``.

    ``negated`` marks ``1 - value`` (no IR op of its own): it is only legal as a factor of the
    IAND join ``(1 - a) * s``. ``step``: the time step of a ``STEP`` value (or of a ``T1`` value
    made from one by ``unsqueeze(0)``), the number of steps summed in an ``ACCUM`` value.
    ``pad``: a ``padding.PendingPad``, a zero-padded ``name`` whose border may still be written
    in place; it becomes ops when the tensor is first read (``padding.py``).
    """

    name: str
    layout: Layout
    spec: ValueSpec
    negated: bool = False
    step: int | None = None
    pad: object = None


def example_batch(timesteps: int | None) -> int:
    """Batch size of the example input: 2, or 3 when T = 2 (so that T != B)."""
    return 3 if timesteps == 2 else 2


class Tracer:
    """State of one trace. Handlers (``functions.py``, ``modules.py``, ``neurons.py``) call
    :meth:`value`, :meth:`emit` and :meth:`bind`."""

    def __init__(self, model: nn.Module, batch: int):
        self.model = model
        self.batch = batch
        self.timesteps: int | None = None
        self.paths = {id(m): name for name, m in model.named_modules()}
        self.root_type = type_name(model)
        self.ops: list[O.Op] = []
        self.specs: dict[str, ValueSpec] = {}
        self._values: dict[int, tuple[weakref.ref, TracedValue]] = {}
        self._names: set[str] = set()
        self._stack: list[tuple[str, str, str, object]] = []  # (role, path, type, leaf handler)
        self.leaf_depth = 0
        self.current_function = ""  # the torch function being recorded (for shared handlers)
        self.stepping = False  # a per-step value was seen: merge repeated ops (see the docstring)
        self._cse: dict[tuple, str] = {}
        self.single_step_calls: dict[int, tuple[str, list]] = {}  # neuron id -> (where, inputs)
        self.single_step_names: dict[int, str] = {}  # neuron id -> its LIF op
        self.producer: dict[str, O.Op] = {}
        self.slices: dict[tuple, str] = {}  # (value, axis, start, stop) -> sliced value
        self.per_sample_neurons: list[str] = []  # multi-step neurons run on [T*B] (batch-1 view)

    # -- values ----------------------------------------------------------------------------
    def lookup(self, t, materialize: bool = True) -> TracedValue | None:
        """The traced value of tensor ``t``, or None for constants and non-tensors. A pending
        pad becomes its ops here, on the first read, unless ``materialize`` is False."""
        if not isinstance(t, torch.Tensor):
            return None
        entry = self._values.get(id(t))
        if entry is None or entry[0]() is not t:
            return None
        v = entry[1]
        if v.pad is not None and materialize:
            from spikec.frontends.torch.padding import materialize as emit_pad
            v = emit_pad(self, t, v)
        return v

    def value(self, t) -> TracedValue | None:
        """Like :meth:`lookup`, resolving a pending ``[1, B]`` layout to ``T = 1`` and refusing a
        ``1 - x`` outside an IAND (the IAND handler reads negated values with ``lookup``)."""
        v = self.lookup(t)
        if v is None:
            return None
        if v.negated:
            raise self.unsupported("1 - x is only supported as a factor of the IAND join "
                                   "(1 - a) * s of two spike tensors")
        if v.layout is Layout.T1:
            if v.step is not None:
                raise self.unsupported("x.unsqueeze(0) of one time step's value is supported only "
                                       "as a part of torch.cat over all the steps")
            self.set_timesteps(1)
            v = replace(v, layout=Layout.TB)
        if v.layout is Layout.ACCUM:
            v = self.finish_sum(v, 1.0)
        return v

    def finish_sum(self, v: TracedValue, factor: float) -> TracedValue:
        """``factor * sum_t y[t]`` of a running sum ``v`` over all steps: ``TimeMean`` (and a
        ``Scale`` by ``factor * T`` unless that is 1)."""
        self.set_timesteps(v.step)
        y = self.emit(O.TimeMean(self.op_name("time_mean"), (v.name,)), Layout.FINAL)
        c = factor * v.step
        if c == 1.0:
            return y
        return self.emit(O.Scale(self.op_name("scale"), (y.name,), factor=float(c)), Layout.FINAL)

    def bind(self, t: torch.Tensor, v: TracedValue) -> None:
        """Map tensor ``t`` to ``v`` (a weak reference: a dead tensor's reused ``id`` is ignored)."""
        self._values[id(t)] = (weakref.ref(t), v)

    def set_timesteps(self, T: int) -> None:
        if self.timesteps is None:
            if T == self.batch:
                raise _BatchIsT(T)
            self.timesteps = T
        elif self.timesteps != T:
            raise self.unsupported(f"the input is repeated over {T} time steps here, but over "
                                   f"{self.timesteps} earlier")

    # -- ops -------------------------------------------------------------------------------
    def fresh_name(self, base: str) -> str:
        name, k = base, 1
        while name in self._names:
            name, k = f"{base}_{k}", k + 1
        self._names.add(name)
        return name

    def op_name(self, short: str) -> str:
        """Name for a function-level op: ``<innermost module path>.<short>``."""
        scope = self.where()
        return self.fresh_name(f"{scope}.{short}" if scope else short)

    def emit(self, op: O.Op, layout: Layout, step: int | None = None) -> TracedValue:
        """Append ``op``, type-check it, and return the traced value it produces (at ``step`` for
        a ``STEP`` layout). While stepping, an op equal to an earlier one is that op."""
        if layout is Layout.STEP and not self.stepping:
            self.stepping = True
            self._cse = {_op_key(o): o.name for o in self.ops}
        try:
            spec = op.infer([self.specs[i] for i in op.inputs])
        except ShapeError as e:
            raise self.unsupported(str(e)) from None
        if self.stepping:
            key = _op_key(op)
            if key in self._cse:
                name = self._cse[key]
                return TracedValue(name, layout, self.specs[name], step=step)
            self._cse[key] = op.name
        self.ops.append(op)
        self.producer[op.name] = op
        self.specs[op.name] = spec
        self._names.add(op.name)
        return TracedValue(op.name, layout, spec, step=step)

    def reshape(self, v: TracedValue, layout: Layout, shape: tuple[int, ...]) -> TracedValue:
        """``v`` with another layout and per-sample shape (a ``Reshape`` op unless unchanged)."""
        if int(np.prod(shape, dtype=np.int64)) != v.spec.size:
            raise self.unsupported(f"reshape of a {v.layout.value} tensor with per-sample shape "
                                   f"{v.spec.shape} to per-sample {shape} mixes the batch/time "
                                   "axes with the others")
        if tuple(shape) == v.spec.shape:
            return replace(v, layout=layout)
        return self.emit(O.Reshape(self.op_name("reshape"), (v.name,), shape=tuple(shape)), layout,
                         v.step)

    # -- where are we ----------------------------------------------------------------------
    def where(self) -> str:
        """Path of the innermost module running (``""`` for the top-level model)."""
        return self._stack[-1][1] if self._stack else ""

    def unsupported(self, msg: str) -> UnsupportedOpError:
        """An error naming the innermost module (path and type) and ``msg``."""
        scope = self.where()
        module = self._stack[-1][2] if self._stack else self.root_type
        at = f"{scope} ({module})" if scope else f"the model's forward ({module})"
        return UnsupportedOpError(f"{at}: {msg}")

    # -- module hooks ----------------------------------------------------------------------
    def pre_hook(self, module: nn.Module, args) -> None:
        from spikec.frontends.torch.modules import classify

        if self.leaf_depth:
            self._stack.append(("inner", self.where(), type_name(module), None))
            self.leaf_depth += 1
            return
        path = self.paths.get(id(module))
        if path is None:  # a module created inside forward: it has its caller's path
            path = self.where()
        role, handler = classify(module, path)
        self._stack.append((role, path, type_name(module), handler))
        if role == "leaf":
            self.leaf_depth += 1

    def post_hook(self, module: nn.Module, args, output) -> None:
        role, path, _, handler = self._stack[-1]
        try:
            if role == "leaf":
                handler(self, module, path, args, output)
        finally:
            self._stack.pop()
            if role in ("leaf", "inner"):
                self.leaf_depth -= 1

    # -- the run ---------------------------------------------------------------------------
    def run(self, example: torch.Tensor, input_op: O.Input):
        """Run the model on ``example`` ([B, *input shape]) and return its output."""
        v = self.emit(input_op, Layout.STATIC)
        self.bind(example, v)
        mode = _RecordingMode(self)
        pre = nn.modules.module.register_module_forward_pre_hook(self.pre_hook)
        post = nn.modules.module.register_module_forward_hook(self.post_hook)
        try:
            with torch.no_grad(), mode:
                return self.model(example)
        finally:
            pre.remove()
            post.remove()

    def finish(self, output, *, timesteps_wanted: int | None) -> list[O.Op]:
        """Add the graph output (a ``TimeMean`` first for per-step outputs) and return the ops."""
        if isinstance(output, (tuple, list)) and output:
            output = output[0]
        v = self.lookup(output)
        if v is None:
            raise UnsupportedOpError(
                f"{type(self.model).__name__}: the model's output was not computed by any op the "
                "tracer saw (a TorchScript module or code outside Python?)")
        if v.negated:
            raise UnsupportedOpError("the model returns 1 - x, which the IR cannot express")
        if v.layout in (Layout.T1, Layout.ACCUM):
            v = self.value(output)
        if v.layout is Layout.STEP:
            raise UnsupportedOpError(f"the model returns the value of time step {v.step} only; "
                                     "return all steps (torch.stack) or their sum or mean")
        if v.layout is Layout.MERGED:
            raise UnsupportedOpError("the model returns a [T*B, ...] tensor; reshape it to "
                                     "[T, B, ...] or average over time")
        if v.layout is Layout.TB:  # per-step outputs (spikingjelly's convention): rate read-out
            v = self.emit(O.TimeMean(self.fresh_name("time_mean"), (v.name,)), Layout.FINAL)
        self.emit(O.Output(self.fresh_name("output"), (v.name,)), v.layout)
        if self.timesteps is None:
            self.timesteps = 1
        for where, inputs in self.single_step_calls.values():
            if len(inputs) != self.timesteps:
                raise UnsupportedOpError(f"{where}: this single-step neuron ran {len(inputs)} "
                                         f"times in a forward over {self.timesteps} time steps")
        if timesteps_wanted is not None and self.timesteps != timesteps_wanted:
            raise ShapeError(f"the model repeats its input over {self.timesteps} time steps, "
                             f"not the {timesteps_wanted} asked for")
        return self.ops


class _BatchIsT(Exception):
    """The model repeats over T = the example batch size: trace again with another batch."""

    def __init__(self, T: int):
        super().__init__(T)
        self.T = T


class _RecordingMode(TorchFunctionMode):
    """Records torch functions and Tensor methods called outside leaf modules."""

    def __init__(self, tracer: Tracer):
        super().__init__()
        self.tracer = tracer

    def __torch_function__(self, func, types, args=(), kwargs=None, out=None):
        from spikec.frontends.torch.functions import FUNCTIONS

        kwargs = kwargs or {}
        if out is None:
            out = func(*args, **kwargs)
        if func is torch.Tensor.__iter__:
            out = tuple(out)  # ``for x in x_seq``: the steps, recorded, then iterated
            self.__torch_function__(torch.Tensor.unbind, types, (args[0], 0), {}, out=out)
            return iter(out)
        tr = self.tracer
        if func is torch.Tensor.__setitem__ and not tr.leaf_depth:
            from spikec.frontends.torch.padding import setitem
            setitem(tr, args)
            return out
        if tr.leaf_depth or not _has_tensor(out):
            return out  # inside a leaf, or metadata (shape, size, dim, ...)
        if not any(tr.lookup(a) is not None for a in _flat(args, kwargs)):
            return out  # constants only
        name = resolve_name(func) or getattr(func, "__name__", repr(func))
        handler = FUNCTIONS.get(name)
        if handler is None:
            raise tr.unsupported(
                f"tensor function {name} is not supported by the torch frontend (a layer or "
                "neuron the frontend should take whole can be registered with "
                "spikec.frontends.torch.handles or register_neuron; see docs/frontend-torch.md)")
        tr.current_function = name
        handler(tr, args, kwargs, out)
        return out


def _op_key(op: O.Op) -> tuple:
    """What makes two ops compute the same value: type, inputs, fields and array contents."""
    arrays = tuple(sorted((k, a.dtype.str, a.shape, hashlib.sha1(a.tobytes()).hexdigest())
                          for k, a in op.arrays().items()))
    attrs = tuple(sorted((k, repr(v)) for k, v in op.attributes().items()))
    return type(op), tuple(op.inputs), attrs, arrays


def _flat(args, kwargs):
    for a in list(args) + list(kwargs.values()):
        if isinstance(a, (tuple, list)):
            yield from a
        else:
            yield a


def _has_tensor(out) -> bool:
    if isinstance(out, torch.Tensor):
        return True
    return isinstance(out, (tuple, list)) and any(isinstance(o, torch.Tensor) for o in out)


def type_name(m) -> str:
    t = type(m)
    mod = t.__module__
    if mod.startswith("torch.nn.modules"):
        return f"torch.nn.{t.__qualname__}"
    return f"{mod}.{t.__qualname__}"


def trace(model: nn.Module, input_op: O.Input, *, timesteps: int | None = None,
          meta: dict | None = None) -> Graph:
    """Trace ``model`` into a verified float ``Graph``.

    Parameters
    ----------
    model : nn.Module
        A multi-step spiking model taking a static batch ``[B, *shape]`` (``shape`` is the shape
        ``input_op`` produces, after padding) and repeating it over time itself, e.g.
        ``x.unsqueeze(0).repeat(T, 1, 1, 1, 1)``. It is put in eval mode.
    input_op : Input
        The graph's input op (raw shape and preprocessing); the example batch is random in [0, 1)
        in the model's input units.
    timesteps : int, optional
        The T the model is expected to use (checked against the repeat it does).
    meta : dict, optional
        Stored as ``graph.meta``.

    Raises
    ------
    UnsupportedOpError
        A module or function with no IR equivalent, naming its path in the model and its type.
    ShapeError
        The model cannot run on the input shape.
    """
    from spikec.frontends.torch.neurons import prepare_neurons
    from spikec.frontends.torch.simplify import simplify

    model.eval()
    shape = tuple(input_op.infer([]).shape)
    batch = example_batch(timesteps)
    while True:
        tracer = Tracer(model, batch)
        example = torch.rand((batch,) + shape, generator=torch.Generator().manual_seed(0))
        with prepare_neurons(model, tracer.paths):
            try:
                output = tracer.run(example, input_op)
            except _BatchIsT as e:
                batch = example_batch(e.T)
                continue
            except SpikecError:
                raise
            except (RuntimeError, ValueError, IndexError) as e:
                first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
                raise ShapeError(f"{type(model).__name__} does not run on inputs of shape "
                                 f"{shape}: {first}") from None
            ops = tracer.finish(output, timesteps_wanted=timesteps)
        break
    meta = dict(meta or {})
    if tracer.per_sample_neurons:
        meta["batch1_neurons"] = sorted(set(tracer.per_sample_neurons))
    graph = Graph(simplify(ops), timesteps=tracer.timesteps, meta=meta)
    graph.specs  # verify
    return graph


__all__ = ["Layout", "TracedValue", "Tracer", "trace", "example_batch", "type_name"]
