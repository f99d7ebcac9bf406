"""The plan of a Lava network: processes, connections, inputs and probes, as JSON + arrays.

A ``PlanBuilder`` lowers a fixed-point graph op by op (``lower.py``, ``ssa.py``) into processes of
the types ``runtime/network.py`` knows. It imports no lava: it runs in spikec's main environment and
writes plain data that the runtime turns into Lava processes.

Lowered values
--------------
Every IR value with spikes or counts becomes an ``LValue``: one or more ``Part``\\ s, each an
OutPort of a process (with Lava's virtual ``reshape``/``transpose`` applied) that carries some of the
value's elements (``index``: the flat IR index of each flat port element; ``None``: all, in order).
A layer split into several LIF processes (one per threshold) has one part per process.

Pipeline depth
--------------
Every Lava Dense/Sparse/Conv delivers one time step after it receives (``delay`` more with Lava's
synaptic delays). A value at depth ``d`` carries model step ``t`` at Lava step ``t + d + 1`` of its
sample's window. A synapse that joins inputs of different depths gets the delay that aligns them
(``DelaySparse``/``DelayDense``); a port that must carry a whole aligned value (Lava Conv, the host
SSA process) gets a delay line or a gather relay (``full_port``).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from spikec.errors import UnsupportedOpError
from spikec.target.fixedpoint import dense_weights, determine_sign_mode
from spikec.target.formats import NumberFormats, SignMode

from .matrix import SynapseMatrix, guard_synapses
from .shared import narrow

#: Name of the one recorder process (the probes).
RECORDER = "recorder"

#: Loihi 2's largest synaptic delay: Lava's bit-accurate DelayDense/DelaySparse models refuse
#: delays above 63 ("Loihi 2 has a maximum of 6 bits for delays", lava/proc/sparse/models.py).
MAX_SYNAPTIC_DELAY = 63



@dataclass
class Part:
    """One OutPort carrying some elements of a lowered value."""

    proc: str
    port: str
    vops: list
    shape: tuple[int, ...]
    index: np.ndarray | None
    depth: int

    @property
    def size(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64))

    def ref(self, extra: list | None = None) -> list:
        return [self.proc, self.port, list(self.vops) + list(extra or [])]


@dataclass
class LValue:
    """An IR value as Lava ports. ``kind``: ``spike`` (binary messages) or ``count`` (graded);
    ``bound``: the largest value an element can take (sizes graded payloads and gates);
    ``exp_shift``: see the field."""

    name: str
    shape: tuple[int, ...]
    kind: str
    bound: int
    parts: list[Part]
    #: a bit plane of the raw input (``--input-encoding bitplane``): synapses reading it add
    #: this to their weight exponents (plane ``k`` weighs ``2**k``)
    exp_shift: int = 0

    @property
    def size(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64))

    @property
    def depth(self) -> int:
        depths = {p.depth for p in self.parts}
        if len(depths) != 1:
            raise UnsupportedOpError(f"value {self.name!r}: parts at different pipeline depths "
                                     f"{sorted(depths)} (internal error in the Lava backend)")
        return depths.pop()

    @property
    def simple(self) -> bool:
        """One part carrying every element in IR order."""
        return len(self.parts) == 1 and self.parts[0].index is None


def message_bits(bound: int) -> int:
    """``num_message_bits`` of a graded connection carrying values in ``[0, bound]``."""
    return max(1, int(bound).bit_length())


@dataclass
class PlanBuilder:
    """Accumulates the plan. ``stats`` collects sizes per category for the report."""

    timesteps: int
    fmt: NumberFormats
    processes: list = field(default_factory=list)
    connections: list = field(default_factory=list)
    arrays: dict = field(default_factory=dict)
    inputs: list = field(default_factory=list)
    probes: list = field(default_factory=list)
    values: dict = field(default_factory=dict)
    notes: list = field(default_factory=list)
    _names: dict = field(default_factory=lambda: {RECORDER: 1})
    _relays: dict = field(default_factory=dict)
    category: str = "network"
    recorder_ports: list = field(default_factory=list)
    stats: dict = field(default_factory=dict)

    # -- bookkeeping -------------------------------------------------------------------------
    def unique(self, base: str) -> str:
        """A process name from ``base`` (an IR name), unique in the plan."""
        base = "".join(ch if ch.isalnum() or ch in "_-" else "_" for ch in base) or "p"
        n = self._names.get(base, 0)
        self._names[base] = n + 1
        return base if n == 0 else f"{base}__{n}"

    def array(self, proc: str, fld: str, arr: np.ndarray) -> str:
        """Store ``arr`` in the npz; returns the ``"@key"`` reference the plan uses."""
        key = f"{proc}.{fld}"
        self.arrays[key] = np.ascontiguousarray(arr)
        return "@" + key

    def count(self, key: str, n: int) -> None:
        """Add ``n`` to the size ``key`` (processes, neurons, synapses...) of the current
        category (``network``, ``ssa_host``/``ssa_decompose``, ``probes``)."""
        cat = self.stats.setdefault(self.category, {})
        cat[key] = cat.get(key, 0) + int(n)

    def add_process(self, ptype: str, base: str, *, neurons: int = 0, synapses: int = 0,
                    **spec) -> str:
        name = self.unique(base)
        self.processes.append({"name": name, "type": ptype, **spec})
        self.count("processes", 1)
        if neurons:
            self.count("neurons", neurons)
        if synapses:
            self.count("synapses", synapses)
        return name

    def connect(self, src: list, dst: list) -> None:
        self.connections.append({"src": src, "dst": dst})

    # -- neuron populations --------------------------------------------------------------------
    def relay(self, base: str, shape: tuple[int, ...], kind: str, depth: int) -> str:
        """A population that passes its summed input on in the same step: for spikes a LIF with
        du = dv = ``decay_max`` (4095: u and v forget, any |v| < 4096 decays to 0) and vth = 0,
        so v = input << 6 > 0 fires on any positive input; for counts GradedVec(vth=0)."""
        n = int(np.prod(shape, dtype=np.int64))
        if kind == "spike":
            return self.lif(base, shape, du=self.fmt.decay_max, dv=self.fmt.decay_max, vth=0,
                            bias_mant=np.zeros(shape, np.int32), bias_exp=np.zeros(shape, np.int32),
                            depth=depth)
        return self.add_process("graded_relay", base, neurons=n, shape=list(shape), vth=0,
                                depth=depth)

    def lif(self, base: str, shape, *, du, dv, vth, bias_mant, bias_exp, depth, ir=None,
            v_subtract=None) -> str:
        """A LIF population (``LIFReset``); ``v_subtract`` (per neuron): the soft reset's
        ``SoftLIFReset`` instead (the hard-reset spec has neither ``reset`` nor ``v_subtract``)."""
        name = self.unique(base)
        spec = {
            "name": name, "type": "lif", "shape": list(shape), "du": int(du), "dv": int(dv),
            "vth": int(vth), "depth": int(depth), "ir": ir,
            "bias_mant": self.array(name, "bias_mant",
                                    narrow(np.asarray(bias_mant).reshape(shape))),
            "bias_exp": self.array(name, "bias_exp", narrow(np.asarray(bias_exp).reshape(shape))),
        }
        if v_subtract is not None:
            spec["reset"] = "soft"
            spec["v_subtract"] = self.array(name, "v_subtract",
                                            narrow(np.asarray(v_subtract).reshape(shape)))
        self.processes.append(spec)
        self.count("processes", 1)
        self.count("neurons", int(np.prod(shape, dtype=np.int64)))
        return name

    # -- synapses ------------------------------------------------------------------------------
    def _representable(self, w: SynapseMatrix, weight_exp: int, where: str):
        """Split ``w`` into (matrix, sign mode) pieces whose weights Lava's Dense/Sparse models use
        unchanged. Mixed-sign matrices lose their lowest bit in Lava (even weights only); when
        that would change a weight, the positive and negative weights become two processes, which
        is exact for ``weight_exp >= 0`` only (a right shift does not distribute over the sum)."""
        data = w.vals
        mode = determine_sign_mode(data)
        if np.array_equal(dense_weights(data, self.fmt, mode), data):
            return [(w, mode)]
        if np.array_equal(dense_weights(data, self.fmt, SignMode.MIXED), data):
            return [(w, SignMode.MIXED)]    # e.g. only -256: beyond the inhibitory range
        pos, neg = w.keep(data > 0), w.keep(data < 0)
        pieces = [(m, s) for m, s in ((pos, SignMode.EXCITATORY), (neg, SignMode.INHIBITORY))
                  if m.nnz]
        ok = all(np.array_equal(dense_weights(m.vals, self.fmt, s), m.vals) for m, s in pieces)
        if weight_exp < 0 or not ok:
            raise UnsupportedOpError(
                f"{where}: weights in [{data.min()}, {data.max()}] with weight_exp {weight_exp} "
                "are not exactly representable by Lava's Dense/Sparse synapses (mixed-sign "
                "weights must be even and in [-256, 254]); quantize them for the loihi2 profile")
        return pieces

    def synapse(self, src: Part, w: SynapseMatrix, dst: list, *, weight_exp: int, graded: bool,
                bound: int, delay: int, base: str, dense: bool = False) -> None:
        """Lava Sparse (or Dense) process(es) ``a = shift(w @ s, weight_exp)`` from ``src`` into
        ``dst`` (a port reference whose shape has ``w.shape[0]`` elements), ``delay`` extra
        steps (Lava's synaptic delay)."""
        if delay < 0:
            raise UnsupportedOpError(f"{base}: negative synaptic delay (internal error)")
        if delay > MAX_SYNAPTIC_DELAY:
            raise UnsupportedOpError(f"{base}: needs a synaptic delay of {delay} steps, Loihi 2 "
                                     f"allows {MAX_SYNAPTIC_DELAY}")
        w = w.canonical()
        if w.nnz == 0:
            return
        src_ref = src.ref([] if len(src.shape) == 1 else [["reshape", [src.size]]])
        for piece, mode in self._representable(w, weight_exp, base):
            common = dict(weight_exp=int(weight_exp), sign_mode=int(mode), delay=int(delay),
                          num_message_bits=message_bits(bound) if graded else 0)
            name = self.unique(base)
            if dense:
                spec = {"name": name, "type": "dense", **common,
                        "weights": self.array(name, "weights", piece.toarray().astype(np.int32))}
            else:
                spec = {"name": name, "type": "sparse", **common, "w_shape": list(piece.shape),
                        **self._sparse_arrays(name, piece)}
            self.processes.append(spec)
            self.count("processes", 1)
            self.count("synapses", piece.nnz)
            self.connect(src_ref, [name, "s_in", []])
            self.connect([name, "a_out", [["reshape", list(dst[3])]]], dst[:3])

    def _sparse_arrays(self, name: str, w: SynapseMatrix) -> dict:
        """A Sparse weight matrix as CSR (``w_indptr``: one entry per row) or, when it has fewer
        nonzeros than rows (a part of a split value into a whole population), as coordinates
        (``w_rows``: one entry per nonzero). Values in the narrowest integer type. ``w`` is
        canonical (sorted by row and column)."""
        m = w
        out = {"w_data": self.array(name, "w_data", narrow(m.vals)),
               "w_indices": self.array(name, "w_indices", m.cols.astype(np.int32))}
        if m.nnz < m.shape[0]:
            out["w_rows"] = self.array(name, "w_rows", m.rows.astype(np.int32))
        else:
            counts = np.bincount(m.rows, minlength=m.shape[0])
            indptr = np.concatenate([[0], np.cumsum(counts)]).astype(np.int32)
            out["w_indptr"] = self.array(name, "w_indptr", indptr)
        return out

    def linear(self, value: LValue, w: SynapseMatrix, dst: list, *, arrive: int, base: str,
               weight_exp: int = 0, dense: bool = False) -> None:
        """Connect ``a = shift(w @ value, weight_exp)`` (``w``: ``[rows, value.size]`` over the
        flat IR value) into ``dst = [proc, port, vops, shape]``, arriving at depth ``arrive``."""
        for part in value.parts:
            wp = w if part.index is None else w.take_cols(part.index)
            self.synapse(part, wp, dst, weight_exp=weight_exp,
                         graded=value.kind == "count", bound=value.bound,
                         delay=arrive - part.depth - 1, base=base, dense=dense)

    # -- whole, aligned ports ------------------------------------------------------------------
    def earliest_full(self, value: LValue) -> int:
        return value.depth if value.simple else value.depth + 1

    def full_port(self, value: LValue, depth: int) -> list:
        """A port carrying all of ``value`` in IR shape at pipeline depth ``depth`` (a gather
        relay when the value is split, a delay line when it is earlier)."""
        if value.simple and value.depth == depth:
            return value.parts[0].ref()
        if depth < value.depth + 1:
            raise UnsupportedOpError(f"value {value.name!r} cannot be aligned to depth {depth} "
                                     "(internal error)")
        key = (value.name, depth)
        if key not in self._relays:
            guard_synapses(value.size, f"the {depth}-step relay of {value.name!r}")
            what = "gather" if not value.simple else "delay"
            relay = self.relay(f"{value.name}_{what}{depth}", value.shape, value.kind, depth)
            self.linear(value, SynapseMatrix.identity(value.size),
                        [relay, "a_in", [], list(value.shape)], arrive=depth,
                        base=f"{value.name}_{what}{depth}_syn")
            self.count(f"{what}_neurons", value.size)
            self._relays[key] = [relay, "s_out", []]
        return self._relays[key]

    # -- probes --------------------------------------------------------------------------------
    def probe(self, value: LValue, kind: str | None = None) -> None:
        """Record ``value`` in every sample's window (a Recorder port per part)."""
        parts = []
        for part in value.parts:
            port = len(self.recorder_ports)
            self.recorder_ports.append({"shape": list(part.shape), "depth": part.depth,
                                        "value": value.name})
            self.connect(part.ref(), [RECORDER, f"in{port}", []])
            idx = None if part.index is None else self.array(RECORDER, f"index{port}",
                                                             part.index.astype(np.int32))
            parts.append({"process": RECORDER, "port": port, "index": idx})
        self.probes.append({"value": value.name, "kind": kind or value.kind,
                            "shape": list(value.shape), "depth": value.depth, "parts": parts})

    def to_json(self) -> dict:
        depth = max((p["depth"] for p in self.probes), default=0)
        procs = self.processes + ([{"name": RECORDER, "type": "recorder",
                                    "ports": self.recorder_ports}] if self.recorder_ports else [])
        return {"timesteps": self.timesteps, "depth": depth, "processes": procs,
                "connections": self.connections, "inputs": self.inputs, "probes": self.probes}
