"""Build a bundle's Lava network from its plan and run it. Imports numpy, scipy and lava only.

The plan (``network.json`` + ``network.npz``, written by ``spikec.backends.lava.write_bundle``)
lists processes, connections, inputs and probes; every array field is a string ``"@key"`` naming
an array of the npz. Process types and the Lava class each becomes:

=================  ==============================================================================
``source``         ``lava.proc.io.source.RingBuffer``: the input, one column per Lava time step
``lif``            ``lava.proc.lif.process.LIFReset`` (u, v zeroed at each sample's first step);
                   with ``"reset": "soft"``, ``procs.SoftLIFReset`` (``v -= v_subtract`` on a spike)
``graded_relay``   ``lava.proc.graded.process.GradedVec`` with ``vth = 0``: sends its input sum
``gate``           ``lava.proc.graded.process.GradedVec`` with ``vth = A - 1`` (decompose SSA)
``prod``           ``lava.proc.prodneuron.process.ProdNeuron`` with ``vth = 0`` (decompose SSA)
``dense``          ``lava.proc.dense.process.Dense`` / ``DelayDense`` when ``delay > 0``
``sparse``         ``lava.proc.sparse.process.Sparse`` / ``DelaySparse`` when ``delay > 0``
``conv``           ``lava.proc.conv.process.Conv`` (on the CPU with ``procs.PyConvModelExp``)
``spike_matmul``   ``procs.SpikeMatmul`` (host SSA)
``readout``        ``procs.Readout``
``recorder``       ``procs.Recorder`` (one, with a port per probed part)
=================  ==============================================================================

Time: a value at depth ``d`` carries model step ``t`` of sample ``k`` at Lava time step
``k * T + t + d + 1``; samples follow each other without a gap (LIFReset clears u and v at each
window start), so ``n`` samples take ``n * T + depth`` steps.
"""
from __future__ import annotations

import os
import shutil
import tempfile
import time

import numpy as np
from scipy.sparse import csr_matrix

from . import procs as P


def _arr(ref, arrays):
    if isinstance(ref, str) and ref.startswith("@"):
        return arrays[ref[1:]]
    return ref


def _sign_mode(code):
    from lava.utils.weightutils import SignMode
    return SignMode(int(code))


def _conn_kwargs(spec):
    kw = dict(num_message_bits=int(spec.get("num_message_bits", 0)),
              weight_exp=int(spec.get("weight_exp", 0)))
    if spec.get("sign_mode") is not None:
        kw["sign_mode"] = _sign_mode(spec["sign_mode"])
    return kw


def _make(spec, arrays, *, samples, timesteps, total_steps, inputs, scratch):
    from lava.proc.conv.process import Conv
    from lava.proc.dense.process import DelayDense, Dense
    from lava.proc.graded.process import GradedVec
    from lava.proc.io.source import RingBuffer as Source
    from lava.proc.lif.process import LIFReset
    from lava.proc.prodneuron.process import ProdNeuron
    from lava.proc.sparse.process import DelaySparse, Sparse

    kind, name = spec["type"], spec["name"]
    shape = tuple(spec.get("shape", ()))
    if kind == "source":
        return Source(data=source_data(spec, inputs[spec["value"]], timesteps, total_steps))
    if kind == "lif":
        kw = dict(shape=shape, du=int(spec["du"]), dv=int(spec["dv"]), vth=int(spec["vth"]),
                  bias_mant=_arr(spec["bias_mant"], arrays).astype(np.int32),
                  bias_exp=_arr(spec["bias_exp"], arrays).astype(np.int32),
                  reset_interval=timesteps, reset_offset=(int(spec["depth"]) + 1) % timesteps,
                  name=name)
        if spec.get("reset") == "soft":
            return P.soft_lif_reset(v_subtract=_arr(spec["v_subtract"], arrays).astype(np.int32),
                                    **kw)
        return LIFReset(**kw)
    if kind in ("graded_relay", "gate"):
        return GradedVec(shape=shape, vth=int(spec.get("vth", 0)))
    if kind == "prod":
        return ProdNeuron(shape=shape, vth=0, exp=0)
    if kind == "dense":
        w = _arr(spec["weights"], arrays).astype(np.int32)
        if spec.get("delay", 0):
            return DelayDense(weights=w, delays=int(spec["delay"]), name=name, **_conn_kwargs(spec))
        return Dense(weights=w, name=name, **_conn_kwargs(spec))
    if kind == "sparse":
        data = _arr(spec["w_data"], arrays).astype(np.int32)
        cols = _arr(spec["w_indices"], arrays).astype(np.int32)
        if "w_rows" in spec:  # coordinates (fewer nonzeros than rows)
            rows = _arr(spec["w_rows"], arrays).astype(np.int32)
            w = csr_matrix((data, (rows, cols)), shape=tuple(spec["w_shape"]))
        else:
            w = csr_matrix((data, cols, _arr(spec["w_indptr"], arrays).astype(np.int32)),
                           shape=tuple(spec["w_shape"]))
        if spec.get("delay", 0):
            delays = w.astype(np.int64)  # Lava wants an int64 matrix of w's sparsity
            delays.data[:] = int(spec["delay"])
            return DelaySparse(weights=w, delays=delays, name=name, **_conn_kwargs(spec))
        return Sparse(weights=w, name=name, **_conn_kwargs(spec))
    if kind == "conv":
        # the chip's 8-bit weights and exponent; on the CPU procs.PyConvModelExp applies the
        # exponent (Lava's own fixed_pt Conv model ignores it)
        w = _arr(spec["weight"], arrays).astype(np.int32)
        return Conv(weight=w, weight_exp=int(spec.get("weight_exp", 0)),
                    input_shape=tuple(spec["input_shape"]),
                    padding=tuple(spec["padding"]), stride=tuple(spec["stride"]),
                    dilation=tuple(spec["dilation"]), groups=int(spec["groups"]),
                    num_message_bits=int(spec.get("num_message_bits", 0)), name=name)
    if kind == "spike_matmul":
        parts = {side: [(tuple(q["shape"]), None if q["index"] is None else _arr(q["index"], arrays))
                        for q in spec[f"{side}_parts"]] for side in ("a", "b")}
        return P.SpikeMatmul(a_shape=spec["a_shape"], b_shape=spec["b_shape"],
                             a_parts=parts["a"], b_parts=parts["b"], name=name)
    if kind == "readout":
        return P.Readout(in_shape=spec["in_shape"], sum_axes=spec["sum_axes"],
                         act_shift=spec["act_shift"], state_bits=spec["state_bits"],
                         timesteps=timesteps, depth=spec["depth"], name=name)
    if kind == "recorder":
        return P.Recorder(shapes=[p["shape"] for p in spec["ports"]],
                          depths=[p["depth"] for p in spec["ports"]], samples=samples,
                          timesteps=timesteps, name=name,
                          out_path=None if scratch is None else os.path.join(scratch, name))
    raise ValueError(f"plan: unknown process type {kind!r} ({name})")


def source_data(spec, x, timesteps, total_steps):
    """The RingBuffer data ``[*shape, total_steps]`` of one input: sample ``k``'s step ``t`` in
    column ``k * T + t``, zero-padded by ``spec['pad']`` pixels, zeros after the last sample."""
    x = np.asarray(x)
    if spec["encoding"] == "repeat":
        x = np.repeat(x[:, None], timesteps, axis=1)
    n = x.shape[0]
    pad = int(spec.get("pad", 0))
    if pad:
        widths = [(0, 0)] * (x.ndim - 2) + [(pad, pad), (pad, pad)]
        x = np.pad(x, widths)
    shape = tuple(spec["shape"])
    if tuple(x.shape[2:]) != shape:
        raise ValueError(f"input {spec['value']!r}: samples of shape {tuple(x.shape[2:])}, the "
                         f"network expects {shape}")
    data = np.zeros(shape + (total_steps,), dtype=np.int32)
    flat = x.reshape((n * timesteps,) + shape).astype(np.int32)
    data[..., :n * timesteps] = np.moveaxis(flat, 0, -1)
    return data


def _port(procs, ref):
    name, port, vops = ref
    p = getattr(procs[name], port)
    for op, arg in vops:
        if op == "reshape":
            p = p.reshape(tuple(arg))
        elif op == "transpose":
            p = p.transpose(tuple(arg))
        else:
            raise ValueError(f"plan: unknown port transform {op!r}")
    return p


def build(plan, arrays, inputs, *, scratch=None):
    """Instantiate every process of ``plan`` and connect them.

    Parameters
    ----------
    plan : dict
        ``network.json``.
    arrays : dict of str -> np.ndarray
        ``network.npz``.
    inputs : dict of value name -> int array
        ``[n, *raw_shape]`` (``repeat`` encoding) or ``[n, T, *raw_shape]`` (``sequence``).
    scratch : str, optional
        A directory where the recorder writes what it recorded (else read back through Vars).

    Returns
    -------
    procs : dict of name -> Lava process
    total_steps : int
    """
    T = int(plan["timesteps"])
    samples = {int(np.asarray(v).shape[0]) for v in inputs.values()}
    if len(samples) != 1:
        raise ValueError(f"inputs disagree on the number of samples: {sorted(samples)}")
    n = samples.pop()
    total = n * T + int(plan["depth"])
    procs = {}
    for spec in plan["processes"]:
        procs[spec["name"]] = _make(spec, arrays, samples=n, timesteps=T, total_steps=total,
                                    inputs=inputs, scratch=scratch)
    for c in plan["connections"]:
        _port(procs, c["src"]).connect(_port(procs, c["dst"]))
    return procs, total


def collect(plan, arrays, procs, samples, scratch=None):
    """Read the probes back: ``{value: int32 array [n, T, *shape]}`` (readouts: ``[n, *shape]``,
    the accumulator after the last step of each sample)."""
    out = {}
    for probe in plan["probes"]:
        shape = tuple(probe["shape"])
        size = int(np.prod(shape, dtype=np.int64))
        T = int(plan["timesteps"])
        full = np.zeros((samples, T, size), dtype=np.int32)
        for part in probe["parts"]:
            path = None if scratch is None else \
                os.path.join(scratch, f"{part['process']}.{part['port']}.npy")
            if path is not None and os.path.exists(path):
                data = np.load(path).astype(np.int32)
            else:
                data = np.asarray(getattr(procs[part["process"]], f"d{part['port']}").get())
                data = data.astype(np.int32)
            data = data.reshape(samples, T, -1)
            idx = _arr(part["index"], arrays) if part.get("index") is not None else None
            if idx is None:
                full[:, :, :] = data
            else:
                full[:, :, idx] = data
        full = full.reshape((samples, T) + shape)
        out[probe["value"]] = full[:, -1] if probe["kind"] == "readout" else full
    return out


def host_traffic(plan, procs):
    """Messages the host SSA processes received and sent over the whole run."""
    out = {}
    for spec in plan["processes"]:
        if spec["type"] == "spike_matmul":
            p = procs[spec["name"]]
            out[spec["name"]] = {"messages_in": int(p.messages_in.get()[0]),
                                 "messages_out": int(p.messages_out.get()[0])}
    return out


def _exact_conv():
    """Lava's Conv model convolves in float32 through torch when torch is importable, which is
    inexact beyond 2**24; force its float64 scipy path (exact for every int32 sum). Lava forks its
    process models, so they inherit this setting."""
    from lava.proc.conv import utils

    utils.TORCH_IS_AVAILABLE = False


def run(plan, arrays, inputs, *, hardware=False):
    """Build, run ``n * T + depth`` steps and collect the probes.

    Parameters
    ----------
    hardware : bool
        ``Loihi2HwCfg`` (a Loihi 2 system with Intel's lava-loihi extension) instead of
        ``Loihi2SimCfg(select_tag='fixed_pt')`` (Lava's bit-accurate CPU models).

    Returns
    -------
    dict with ``values`` (see ``collect``), ``samples``, ``steps``, ``seconds`` (build: create
    the processes; run: compile, start and run them, of which startup: the first step, and
    steady_per_step: each later step; read: probes and host traffic; stop),
    ``host_traffic`` and ``processes`` (the number of Lava processes).
    """
    from lava.magma.core.run_conditions import RunSteps
    from lava.magma.core.run_configs import Loihi2HwCfg, Loihi2SimCfg

    _exact_conv()
    t0 = time.perf_counter()
    scratch = tempfile.mkdtemp(prefix="spikec-lava-")
    procs, total = build(plan, arrays, inputs, scratch=scratch)
    n = (total - int(plan["depth"])) // int(plan["timesteps"])
    models = P.model_map(procs.values(), on_cpu=not hardware)
    if hardware:
        cfg = Loihi2HwCfg(select_tag="fixed_pt", exception_proc_model_map=models)
    else:
        cfg = Loihi2SimCfg(select_tag="fixed_pt", exception_proc_model_map=models)
    anchor = next(iter(procs.values()))
    t1 = time.perf_counter()
    # the first step separately: Lava compiles the network and starts one OS process per Lava
    # process there, so the rest measures the steady cost of a step
    anchor.run(condition=RunSteps(num_steps=1), run_cfg=cfg)
    t_first = time.perf_counter()
    if total > 1:
        anchor.run(condition=RunSteps(num_steps=total - 1), run_cfg=cfg)
    t2 = time.perf_counter()
    try:
        values = collect(plan, arrays, procs, n, scratch)
        traffic = host_traffic(plan, procs)
        t3 = time.perf_counter()
    finally:
        anchor.stop()
        shutil.rmtree(scratch, ignore_errors=True)
    t4 = time.perf_counter()
    return {"values": values, "samples": n, "steps": total, "processes": len(procs),
            "host_traffic": traffic,
            "seconds": {"build": t1 - t0, "run": t2 - t1, "startup": t_first - t1,
                        "steady_per_step": (t2 - t_first) / max(total - 1, 1),
                        "read": t3 - t2, "stop": t4 - t3, "total": t4 - t0}}
