"""Event-driven accounting: what the chip does per layer and per time step.

Definitions (all counts are summed over the samples of a run; ``LayerStats.per_sample`` divides):

``spikes``
    Output spikes of a ``cuba_lif`` layer (binary events it sends).
``input_events``
    Messages a synapse op receives: one per nonzero element of each input per step (a spike, or a
    graded message whose payload is the value). Zero values send nothing (event-driven).
``graded_events``
    The subset of ``input_events`` that carry a payload (inputs of kind ``count``: raw pixels,
    the residual stream, attention products).
``synaptic_events``
    Synaptic operations: every input event times its actual fan-out, the number of synapses the
    source neuron has in this op. Dense: ``n_out``. Conv: ``(C_out / groups) * fan_h(y) * fan_w(x)``
    where ``fan_h(y)`` counts the (output row, kernel row) pairs that read input row ``y`` (fewer at
    the borders and between strided windows; zero for rows no window reaches).
``neuron_updates``
    Compartment updates: every neuron of a ``cuba_lif`` or ``readout`` op, every step (Loihi updates
    all compartments each step, spiking or not).
``ssa_ops``
    Integer multiply-accumulates of a ``spike_matmul`` on nonzero operand pairs:
    ``sum_k nnz(a[..., :, k]) * nnz(b[..., k, :])`` per step.
``values_out``
    Nonzero values an ``add`` (the residual stream) or a ``spike_matmul`` emits: the graded
    messages its relay neurons (or the CPU running the product) send.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

COUNTERS = ("spikes", "input_events", "graded_events", "synaptic_events", "neuron_updates",
            "ssa_ops", "values_out")


@dataclass
class LayerStats:
    """Per-time-step event counts of one op, summed over ``samples`` samples.

    Attributes
    ----------
    name, op : the op's name and opcode.
    neurons : compartments per sample (``cuba_lif``, ``readout``; 0 for other ops).
    samples : number of samples the counts are summed over.
    spikes, input_events, graded_events, synaptic_events, neuron_updates, ssa_ops, values_out :
        int64 arrays [T] (see the module docstring).
    """

    name: str
    op: str
    neurons: int
    timesteps: int
    samples: int = 0
    counts: dict = field(default_factory=dict)

    def __post_init__(self):
        block = np.zeros((len(COUNTERS), self.timesteps), dtype=np.int64)   # one allocation
        for c, row in zip(COUNTERS, block):
            self.counts.setdefault(c, row)

    def __getattr__(self, item):
        counts = self.__dict__.get("counts")
        if counts is not None and item in counts:
            return counts[item]
        raise AttributeError(item)

    def add(self, counter: str, per_step: np.ndarray) -> None:
        self.counts[counter] += np.asarray(per_step, dtype=np.int64)

    def merge(self, other: "LayerStats") -> None:
        """Add another run's counts of the same op (batches of one data set)."""
        for c in COUNTERS:
            self.counts[c] += other.counts[c]
        self.samples += other.samples

    def total(self, counter: str) -> int:
        return int(self.counts[counter].sum())

    def per_sample(self, counter: str) -> float:
        """Mean count per sample over all T steps (one inference)."""
        return self.total(counter) / self.samples if self.samples else 0.0

    def firing_rate(self) -> float | None:
        """Spikes per neuron per step (``cuba_lif`` layers), None for other ops."""
        if self.op != "cuba_lif" or not self.neurons or not self.samples:
            return None
        return self.total("spikes") / (self.neurons * self.timesteps * self.samples)


def nonzero_per_step(x: np.ndarray) -> np.ndarray:
    """Number of nonzero elements of ``x`` [T, B, ...] per step -> int64 [T].

    One whole-array ``count_nonzero`` per step (numpy's fast path; counting along an axis
    converts to bool and sums, several times slower); an input repeated every step (a
    broadcast view) is counted once.
    """
    T = x.shape[0]
    if T > 1 and x.strides[0] == 0:
        return np.full(T, np.count_nonzero(x[0]), dtype=np.int64)
    return np.array([np.count_nonzero(x[t]) for t in range(T)], dtype=np.int64)


def axis_fanout(size: int, out_len: int, kernel: int, stride: int, pad: int,
                dilation: int = 1) -> np.ndarray:
    """For each input index ``y`` in ``[0, size)``: the number of (output index i, kernel tap u)
    pairs with ``stride * i + dilation * u - pad == y`` -> int64 [size]."""
    pos = (stride * np.arange(out_len)[:, None] + dilation * np.arange(kernel)[None, :] - pad).ravel()
    pos = pos[(pos >= 0) & (pos < size)]
    return np.bincount(pos, minlength=size).astype(np.int64)


def conv_fanout(in_shape: tuple[int, int, int], out_shape: tuple[int, int, int], kernel, stride,
                padding, dilation, groups: int) -> np.ndarray:
    """Fan-out of every input position of a conv, per input channel: int64 [H, W] (the same for
    every channel: ``C_out / groups`` output channels read each input channel)."""
    _, h, w = in_shape
    cout, ho, wo = out_shape
    fh = axis_fanout(h, ho, kernel[0], stride[0], padding[0], dilation[0])
    fw = axis_fanout(w, wo, kernel[1], stride[1], padding[1], dilation[1])
    return (cout // groups) * fh[:, None] * fw[None, :]


def conv_synaptic_events(x: np.ndarray, fanout: np.ndarray) -> np.ndarray:
    """``sum over nonzero x[t, b, c, y, x] of fanout[y, x]`` per step, for x [T, B, C, H, W].

    The fan-out is separable (``fanout[y, x] = f * fh[y] * fw[x]``): it is the largest value
    ``fmax`` except in the rows ``R`` and columns ``C`` where a window is missing (the borders of
    a padded conv). So the sum is ``fmax * nnz`` minus the deficits of the events in those rows
    and columns, which are counted alone when they are few.
    """
    T = x.shape[0]
    fmax = int(fanout.max()) if fanout.size else 0
    rows = np.flatnonzero(fanout.max(axis=1) < fmax)
    cols = np.flatnonzero(fanout.max(axis=0) < fmax)
    h, w = fanout.shape
    if 4 * len(rows) <= h and 4 * len(cols) <= w:
        total = fmax * nonzero_per_step(x)
        deficit = fmax - fanout
        keep = np.ones(h, dtype=bool)
        keep[rows] = False
        inner = np.flatnonzero(keep)
        for strip, d in ((x[..., rows, :], deficit[rows, :]),
                         (x[..., cols][..., inner, :], deficit[np.ix_(inner, cols)])):
            if strip.size:
                cnt = np.count_nonzero(strip.reshape(T, -1, d.size), axis=1)     # [T, |strip|]
                total -= cnt.astype(np.int64) @ d.ravel().astype(np.int64)
        return total
    nz = np.count_nonzero(x, axis=2)                       # [T, B, H, W]
    return np.tensordot(nz.reshape(T, -1, fanout.size).sum(axis=1, dtype=np.int64),
                        fanout.ravel(), axes=([1], [0])).astype(np.int64)


def ssa_ops(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Nonzero-operand MACs of ``a @ b`` per step: a [T, B, ..., m, k], b [T, B, ..., k, n]."""
    T = a.shape[0]
    na = np.count_nonzero(a, axis=-2)                      # [T, B, ..., k]
    nb = np.count_nonzero(b, axis=-1)                      # [T, B, ..., k]
    return (na.astype(np.int64) * nb).reshape(T, -1).sum(axis=1)


def float_graph_stats(graph, values: dict[str, np.ndarray], batch: int) -> dict[str, LayerStats]:
    """The same counts for a float graph run by ``spikec.interp`` (for ``simulate --stage float``).

    ``values`` must hold the inputs of every ``conv2d``/``linear``/``spike_matmul`` and the output
    of every ``lif``, ``add`` and ``spike_matmul`` ([T, B, ...]). Definitions as for fixed graphs: a ``conv2d``/``linear`` is a
    synapse op (its nonzero inputs are events, real or count inputs are graded), a ``lif`` a neuron.
    """
    from spikec.ir import ops as O
    from spikec.ir.types import Kind

    specs = graph.specs
    T = graph.timesteps
    stats: dict[str, LayerStats] = {}
    for op in graph.ops:
        spec = specs[op.name]
        neurons = int(np.prod(spec.shape)) if isinstance(op, O.LIF) else 0
        s = LayerStats(op.name, op.OPCODE, neurons, T, samples=batch)
        if isinstance(op, (O.Conv2d, O.Linear)) and specs[op.inputs[0]].rate.value == "step":
            x = values[op.inputs[0]]
            nz = nonzero_per_step(x)
            s.add("input_events", nz)
            if specs[op.inputs[0]].kind is not Kind.SPIKE:
                s.add("graded_events", nz)
            if isinstance(op, O.Conv2d):
                fan = conv_fanout(specs[op.inputs[0]].shape, spec.shape, op.weight.shape[2:],
                                  op.stride, op.padding, op.dilation, op.groups)
                s.add("synaptic_events", conv_synaptic_events(x, fan))
            else:
                s.add("synaptic_events", nz * int(op.weight.shape[0]))
        elif isinstance(op, O.LIF):
            s.add("spikes", nonzero_per_step(values[op.name]))
            s.add("neuron_updates", np.full(T, neurons * batch, dtype=np.int64))
        elif isinstance(op, O.SpikeMatmul):
            s.add("ssa_ops", ssa_ops(values[op.inputs[0]], values[op.inputs[1]]))
        if isinstance(op, (O.Add, O.SpikeMatmul)):
            s.add("values_out", nonzero_per_step(values[op.name]))
        stats[op.name] = s
    return stats


def float_graph_record(graph) -> list[str]:
    """Names ``float_graph_stats`` needs recorded."""
    from spikec.ir import ops as O

    names = []
    for op in graph.ops:
        if isinstance(op, (O.Conv2d, O.Linear, O.SpikeMatmul)):
            names.extend(op.inputs)
        if isinstance(op, (O.LIF, O.Add, O.SpikeMatmul)):
            names.append(op.name)
    return sorted(set(names))
