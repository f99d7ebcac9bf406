"""spikec's Lava processes, for what ``lava.proc`` has no process for. Imports numpy and lava only.

Each comes with a ``fixed_pt`` CPU process model (integer arithmetic, int32 messages). They are
selected explicitly through the run configuration's ``exception_proc_model_map`` (``MODELS``), so
no model discovery by file scanning is involved.

* ``SpikeMatmul``: the ``host`` lowering of spiking self-attention. The integer product
  ``y[..., m, n] = sum_k a[..., m, k] * b[..., k, n]`` of two dynamic tensors, computed off the
  neuro-cores (embedded or host CPU). It answers in the step its inputs arrive (no delay).
* ``Readout``: the output accumulator the host reads. ``acc = clip(acc + (sum_axes(a_in) <<
  act_shift))``, clipped symmetrically to ``state_bits``; reset to zero at the first step of each
  sample's window. It sends ``acc`` every step.
* ``Recorder``: the probes. Records what arrives on each of its ports during each sample's
  window, into ``d<i>[sample, t, ...]`` (not part of the network).
* ``PyConvModelExp``: a CPU model for Lava's own ``Conv`` process. Lava 0.10's ``fixed_pt`` Conv
  model ignores ``weight_exp``; this one is that model plus the exponent as Loihi and Lava's
  Dense/Sparse models apply it: the exact integer sum, shifted (``<< e``, or an arithmetic
  ``>> -e``), then Conv's 24-bit wrap of ``a_out``.
* ``SoftLIFReset``: Lava's ``LIFReset`` with a soft reset (spikingjelly's ``v_reset=None``). Its
  model is Lava's bit-accurate ``PyLifResetModelBitAcc`` with only the reset replaced: ``v -=
  v_subtract`` where the neuron fired, instead of ``v = 0`` (``v_subtract``: per neuron, in
  ``v``'s units). A spiking ``v`` exceeds ``vth << 6 >= 0`` and ``0 <= v_subtract < 2**23``, so
  the difference stays in the 24-bit range; Loihi 2's programmable neurons run it as microcode.

Time convention (shared with ``network``): a value at pipeline depth ``d`` carries model step ``t``
of sample ``k`` at Lava time step ``k * T + t + d + 1`` (Lava counts time steps from 1).
"""
from __future__ import annotations

import functools

import numpy as np
from lava.magma.core.decorator import implements, requires, tag
from lava.magma.core.model.py.model import PyLoihiProcessModel
from lava.magma.core.model.py.ports import PyInPort, PyOutPort
from lava.magma.core.model.py.type import LavaPyType
from lava.magma.core.process.ports.ports import InPort, OutPort
from lava.magma.core.process.process import AbstractProcess
from lava.magma.core.process.variable import Var
from lava.magma.core.resources import CPU
from lava.magma.core.sync.protocols.loihi_protocol import LoihiProtocol


def window_index(time_step: int, depth: int, timesteps: int) -> tuple[int, int]:
    """(sample, model step) of Lava ``time_step`` for a value at ``depth``; sample < 0 before the
    first window."""
    s = int(time_step) - 1 - int(depth)
    if s < 0:
        return -1, 0
    return s // timesteps, s % timesteps


def _wrap32(x):
    return ((np.asarray(x, np.int64) + (1 << 31)) & ((1 << 32) - 1)) - (1 << 31)


# ----------------------------------------------------------------------------- SpikeMatmul
class SpikeMatmul(AbstractProcess):
    """Integer product of two dynamic tensors, ``y = a @ b`` over the last two axes.

    Each operand arrives on one port per part of a split layer (``a0, a1, ...``, ``b0, ...``):
    the process reassembles it from the parts' flat indices, so a layer split by threshold needs
    no gather neurons on the chip.

    Parameters
    ----------
    a_shape : tuple, ``(..., M, K)``
    b_shape : tuple, ``(..., K, N)`` with the same leading (head) axes.
    a_parts, b_parts : list of (port shape, flat indices into the operand or None for all)
    """

    def __init__(self, *, a_shape, b_shape, a_parts=None, b_parts=None, name=None):
        a_shape, b_shape = tuple(a_shape), tuple(b_shape)
        a_parts = a_parts or [(a_shape, None)]
        b_parts = b_parts or [(b_shape, None)]
        out_shape = a_shape[:-1] + b_shape[-1:]
        super().__init__(a_shape=a_shape, b_shape=b_shape, name=name,
                         a_index=[None if i is None else np.asarray(i) for _, i in a_parts],
                         b_index=[None if i is None else np.asarray(i) for _, i in b_parts])
        for side, parts in (("a", a_parts), ("b", b_parts)):
            for j, (shape, _) in enumerate(parts):
                setattr(self, f"{side}{j}", InPort(shape=tuple(shape)))
        self.s_out = OutPort(shape=out_shape)
        self.messages_in = Var(shape=(1,), init=0)
        self.messages_out = Var(shape=(1,), init=0)


def spike_matmul_model(n_a: int, n_b: int):
    """The fixed_pt CPU model of a SpikeMatmul with ``n_a`` and ``n_b`` operand ports: ``y = a @
    b`` in int64, sent as int32 graded messages. It counts the nonzero messages it receives and
    sends (the traffic between the neuro-cores and the CPU that runs it)."""
    attrs = {"s_out": LavaPyType(PyOutPort.VEC_DENSE, np.int32, precision=24),
             "messages_in": LavaPyType(np.ndarray, np.int64),
             "messages_out": LavaPyType(np.ndarray, np.int64)}
    for side, n in (("a", n_a), ("b", n_b)):
        for j in range(n):
            attrs[f"{side}{j}"] = LavaPyType(PyInPort.VEC_DENSE, np.int32, precision=24)

    def operand(self, side):
        p = self.proc_params
        shape = tuple(p[f"{side}_shape"])
        full = np.zeros(int(np.prod(shape)), np.int64)
        for j, index in enumerate(p[f"{side}_index"]):
            x = np.asarray(getattr(self, f"{side}{j}").recv()).astype(np.int64).ravel()
            if index is None:
                full[:] = x
            else:
                full[index] = x
        return full.reshape(shape)

    def run_spk(self):
        a, b = operand(self, "a"), operand(self, "b")
        y = np.matmul(a, b)
        self.messages_in[0] += int(np.count_nonzero(a) + np.count_nonzero(b))
        self.messages_out[0] += int(np.count_nonzero(y))
        self.s_out.send(y.astype(np.int32))

    attrs["run_spk"] = run_spk
    attrs["__doc__"] = "SpikeMatmul model: reassembles the operands, sends their product."
    cls = type(f"PySpikeMatmulModel{n_a}x{n_b}", (PyLoihiProcessModel,), attrs)
    return implements(proc=SpikeMatmul, protocol=LoihiProtocol)(requires(CPU)(tag("fixed_pt")(cls)))


# ----------------------------------------------------------------------------- Conv
def conv_exact(s_in, weight, kernel_size, stride, padding, dilation, groups) -> np.ndarray:
    """Lava's Conv arithmetic (``lava.proc.conv.utils.conv``, (X, Y, C) layout) in int64: exact
    for every sum. A 1x1 kernel with stride 1, no padding and one group is the same sum as a
    matrix product over channels, which is computed that way (thousands of times faster than one
    ``convolve2d`` per channel pair)."""
    from lava.proc.conv import utils

    w = np.asarray(weight, np.int64)
    if tuple(w.shape[1:3]) == (1, 1) and int(groups) == 1 and \
            tuple(np.ravel(stride)) == (1, 1) and tuple(np.ravel(padding)) == (0, 0):
        return np.asarray(s_in, np.int64) @ w[:, 0, 0, :].T
    # float64 scipy path (utils.TORCH_IS_AVAILABLE is forced off by network._exact_conv):
    # exact below 2**53, cast back to int64 through the weight's dtype
    return utils.conv(np.asarray(s_in, np.int64), w, kernel_size, stride, padding, dilation,
                      int(groups))


def shift_wrap(acc: np.ndarray, weight_exp: int, bits: int = 24) -> np.ndarray:
    """``acc << e`` (or the arithmetic ``acc >> -e``), then the signed ``bits``-bit wrap of
    Lava's Conv output (``utils.signed_clamp``)."""
    e = int(weight_exp)
    acc = np.asarray(acc, np.int64)
    acc = acc << e if e >= 0 else acc >> -e
    base = 1 << bits
    return (acc + base // 2) % base - base // 2


def _conv_exp_model():
    from lava.proc.conv.models import PyConvModelFixed

    class PyConvModelExp(PyConvModelFixed):
        """Lava's fixed_pt Conv model with the weight exponent applied to each sum."""

        def run_spk(self) -> None:
            if self.a_buf is None:
                self.a_buf = np.zeros(self.a_out.shape, np.int32)
            self.a_out.send(self.a_buf)
            s_in = self.s_in.recv()
            if self.num_message_bits.item() == 0:
                s_in = s_in.astype(bool)
            acc = conv_exact(s_in, self.weight, self.kernel_size, self.stride, self.padding,
                             self.dilation, self.groups[0])
            self.a_buf = shift_wrap(acc, self.weight_exp.item()).astype(np.int32)

    return PyConvModelExp


# ----------------------------------------------------------------------------- soft reset
@functools.lru_cache(maxsize=None)
def _soft_lif_classes():
    """(SoftLIFReset, its fixed_pt model), made once, on first use."""
    from lava.proc.lif.models import PyLifResetModelBitAcc
    from lava.proc.lif.process import LIFReset

    class SoftLIFReset(LIFReset):
        """``LIFReset`` whose neurons subtract ``v_subtract`` (int array of ``shape``) from
        ``v`` when they fire, instead of setting ``v = 0``."""

        def __init__(self, *, v_subtract, **kwargs):
            super().__init__(**kwargs)
            self.v_subtract = Var(shape=tuple(kwargs["shape"]),
                                  init=np.asarray(v_subtract, np.int32))

    class PySoftLifResetModelBitAcc(PyLifResetModelBitAcc):
        """Lava's bit-accurate LIFReset model with the soft reset."""

        v_subtract: np.ndarray = LavaPyType(np.ndarray, np.int32, precision=24)

        def reset_voltage(self, spike_vector: np.ndarray) -> None:
            self.v[spike_vector] -= self.v_subtract[spike_vector]

    return SoftLIFReset, PySoftLifResetModelBitAcc


def soft_lif_reset(**kwargs):
    """A ``SoftLIFReset`` process (``LIFReset``'s arguments plus ``v_subtract``)."""
    return _soft_lif_classes()[0](**kwargs)


# ----------------------------------------------------------------------------- Readout
class Readout(AbstractProcess):
    """Output accumulator (an integrator without threshold), reset at each sample's window start.

    Parameters
    ----------
    in_shape : tuple
        Shape of the synaptic input ``a_in``.
    sum_axes : tuple of int
        Axes of ``a_in`` summed into one accumulator (the token axis).
    act_shift : int
        ``a_in`` is left-shifted by this (Loihi's MSB alignment, 6).
    state_bits : int
        ``acc`` saturates at ``+-(2**(state_bits-1) - 1)``.
    timesteps, depth : int
        Window of the input (see the module docstring); ``acc`` is zeroed at each window start.
    """

    def __init__(self, *, in_shape, sum_axes, act_shift, state_bits, timesteps, depth, name=None):
        in_shape = tuple(in_shape)
        axes = tuple(sorted(a % len(in_shape) for a in sum_axes))
        out_shape = tuple(d for i, d in enumerate(in_shape) if i not in axes) or (1,)
        super().__init__(in_shape=in_shape, sum_axes=axes, act_shift=act_shift,
                         state_bits=state_bits, timesteps=timesteps, depth=depth, name=name)
        self.a_in = InPort(shape=in_shape)
        self.s_out = OutPort(shape=out_shape)
        self.acc = Var(shape=out_shape, init=0)


@implements(proc=Readout, protocol=LoihiProtocol)
@requires(CPU)
@tag("fixed_pt")
class PyReadoutModelFixed(PyLoihiProcessModel):
    a_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, np.int32, precision=24)
    s_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, np.int32, precision=24)
    acc: np.ndarray = LavaPyType(np.ndarray, np.int32, precision=24)

    def run_spk(self):
        p = self.proc_params
        a = np.asarray(self.a_in.recv()).astype(np.int64)
        _, t = window_index(self.time_step, p["depth"], p["timesteps"])
        if t == 0:
            self.acc[:] = 0
        if p["sum_axes"]:
            a = a.sum(axis=tuple(p["sum_axes"])).reshape(self.acc.shape)
        # the compartment's in-port sums the tokens into an int32, shifted in int32 like a LIF's
        a = _wrap32(_wrap32(a) << p["act_shift"])
        lim = (1 << (p["state_bits"] - 1)) - 1
        acc = np.clip(self.acc.astype(np.int64) + a, -lim, lim)
        self.acc[:] = acc
        self.s_out.send(acc.astype(np.int32))


# ----------------------------------------------------------------------------- Recorder
class Recorder(AbstractProcess):
    """The probes: port ``in<i>`` records ``d<i>[k, t] = input`` for sample ``k`` and model step
    ``t`` of a value at ``depths[i]`` (one host process for every probed port, so that probing
    does not multiply Lava's processes).

    Parameters
    ----------
    shapes : list of tuple
        Shape of each probed port.
    depths : list of int
    samples, timesteps : int
    out_path : str, optional
        Where the model writes every ``d<i>`` (an .npy per port, ``<out_path>.<i>.npy``) after
        the last window: much faster than reading the Vars back through Lava's runtime.
    """

    def __init__(self, *, shapes, depths, samples, timesteps, out_path=None, name=None):
        shapes = [tuple(int(d) for d in sh) for sh in shapes]
        super().__init__(shapes=shapes, depths=[int(d) for d in depths], samples=samples,
                         timesteps=timesteps, out_path=out_path, name=name)
        for i, sh in enumerate(shapes):
            setattr(self, f"in{i}", InPort(shape=sh))
            setattr(self, f"d{i}", Var(shape=(samples, timesteps) + sh, init=0))


def recorder_model(n_ports: int):
    """The fixed_pt CPU model of a Recorder with ``n_ports`` ports (its LavaPyType fields are
    class attributes, so the class is made per port count)."""
    attrs = {}
    for i in range(n_ports):
        attrs[f"in{i}"] = LavaPyType(PyInPort.VEC_DENSE, np.int32, precision=24)
        attrs[f"d{i}"] = LavaPyType(np.ndarray, np.int32, precision=24)

    def run_spk(self):
        p = self.proc_params
        for i, depth in enumerate(p["depths"]):
            x = getattr(self, f"in{i}").recv()
            k, t = window_index(self.time_step, depth, p["timesteps"])
            if 0 <= k < p["samples"]:
                getattr(self, f"d{i}")[k, t] = x
        last = p["samples"] * p["timesteps"] + max(p["depths"])
        if p.get("out_path") and self.time_step == last:
            for i in range(len(p["depths"])):
                np.save(f"{p['out_path']}.{i}.npy", getattr(self, f"d{i}"))

    attrs["run_spk"] = run_spk
    attrs["__doc__"] = "Recorder model: each port's input stored in its sample/step window."
    cls = type(f"PyRecorderModel{n_ports}", (PyLoihiProcessModel,), attrs)
    return implements(proc=Recorder, protocol=LoihiProtocol)(requires(CPU)(tag("fixed_pt")(cls)))


def model_map(procs, *, on_cpu: bool = True) -> dict:
    """``exception_proc_model_map`` (keyed by process instance, as Lava looks it up) for every
    spikec process in ``procs``, and (``on_cpu``) ``PyConvModelExp`` for every Lava Conv."""
    from lava.proc.conv.process import Conv

    out = {}
    conv_model = _conv_exp_model() if on_cpu else None
    soft = _soft_lif_classes()
    for p in procs:
        if conv_model is not None and isinstance(p, Conv):
            out[p] = conv_model
        elif isinstance(p, soft[0]):
            out[p] = soft[1]
        elif isinstance(p, SpikeMatmul):
            out[p] = spike_matmul_model(len(p.proc_params["a_index"]),
                                        len(p.proc_params["b_index"]))
        elif isinstance(p, Readout):
            out[p] = PyReadoutModelFixed
        elif isinstance(p, Recorder):
            out[p] = recorder_model(len(p.proc_params["depths"]))
    return out
