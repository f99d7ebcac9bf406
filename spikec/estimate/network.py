"""The mapper's view of a fixed-point graph: neuron layers on cores, and work that is not.

A *core layer* is a population of compartments that lives on neuro-cores, with the static
synapses that feed it:

* ``cuba_lif`` and ``readout`` ops, with their ``conv_synapse`` / ``dense_synapse`` (or an identity
  input when they read a spike or count directly, e.g. the attention product);
* the integer ops of the fixed graph that need compartments of their own: ``maxpool2d`` on spikes
  (an OR neuron per output, one synapse per window tap), ``add`` (a graded relay neuron summing
  two streams) and ``iand`` (a neuron with one excitatory and one inhibitory synapse).

A *host unit* is work off the neuro-cores: ``graded_input`` (pixels injected by the host as graded
spikes) and ``spike_matmul`` (the SSA product, on the embedded CPUs under the ``host`` lowering).
The compiled input encoding (``graph.meta["input_encoding"]``, docs/compiler.md) changes the input:
``bitplane`` gives eight ``bitplane_input`` units (``INPUT.plane0`` .. ``INPUT.plane7``, binary
spikes), each read through its own copy of the first layer's synapses; ``host`` moves the first
layer itself off the cores into a ``host_layer`` unit (named like the LIF) that sends its spikes.

Under the ``decompose`` lowering (``spikec.target.ssa``) a ``spike_matmul`` becomes two core
layers instead: ``NAME.terms`` (``ssa_term``), one term neuron per term ``(z, m, k, n)`` with a
synapse from ``a[z, m, k]`` and one from ``b[z, k, n]``, and ``NAME`` (``ssa_sum``), the graded
relay ``y[z, m, n]`` summing its ``K`` terms (plus ``K`` correction synapses from the gating spikes
of a spike x count product). Both are dense layers with one feature (``F = 1``); their input
streams read a source element from several neurons (``Term.shared``).

Connectivity is kept in one of two canonical forms on the layer's neurons arranged as
``(C, H, W)``:

* ``ConvGeometry``: neuron ``(o, i, j)`` reads input ``(c, s*i + d*u - p, s*j + d*v - p)`` for the
  ``C_in / groups`` channels ``c`` of its group and every tap ``(u, v)`` (``maxpool2d``: one
  channel, ``groups = C``);
* ``DenseGeometry``: neurons ``(f, p, 0)`` (``F`` features at ``P`` positions) each read all ``K``
  inputs ``(k, p)`` of their position (a dense synapse along one axis: ``K = n_in``; with the
  readout's summed axes folded into ``K``; an identity or elementwise input: ``F = K = 1``).

Every input stream (``Term``) carries ``index``: an integer array in the canonical input layout
with, per input element, the flat index of the source element that sends it (-1: a constant
zero, e.g. the padding of a graded input), so that axons and core-to-core traffic can be
counted exactly through reshapes and transposes. An index may name the same source element
more than once (``Term.shared``: an SSA operand fans out to many term neurons); a core still
receives it on one axon.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np

from spikec.errors import UnsupportedOpError
from spikec.ir import ops as O
from spikec.ir.dispatch import OpTable
from spikec.ir.fixed import (FIXED_DOMAIN_OPS, ConvSynapse, CubaLIF, DenseSynapse, GradedInput,
                             Readout)
from spikec.ir.graph import Graph
from spikec.ir.types import Domain, Kind
from spikec.target.ssa import LOWERINGS, SSALowering, gate_operand, product_dims, term_indices, term_neuron

#: Bits of a raw pixel: the planes of a ``bitplane`` input.
INPUT_PLANES = 8

#: Host-unit kinds that the host (not the embedded CPUs) sends from, at pipeline depth 0.
HOST_INPUT_KINDS = ("graded_input", "bitplane_input", "host_layer")

#: ``Layer.kind`` values.
LAYER_KINDS = ("lif", "readout", "maxpool", "add", "iand", "and", "reduce_sum", "ssa_term",
               "ssa_sum")


@dataclass(frozen=True)
class ConvGeometry:
    """Convolutional connectivity (also max-pool windows): ``out`` ``(C, H, W)`` neurons read
    ``inp`` ``(C_in, H_in, W_in)`` through ``kernel`` taps, zero padding ``padding``.

    ``weights_per_channel``: distinct weights of one output channel (``C_in/groups * kH * kW``; 1
    for a max-pool, whose taps all carry the same unit weight)."""

    out: tuple[int, int, int]
    inp: tuple[int, int, int]
    kernel: tuple[int, int]
    stride: tuple[int, int]
    padding: tuple[int, int]
    dilation: tuple[int, int]
    groups: int
    weights_per_channel: int

    @property
    def cin_per_group(self) -> int:
        return self.inp[0] // self.groups

    @property
    def cout_per_group(self) -> int:
        return self.out[0] // self.groups

    @property
    def fan_in(self) -> int:
        """Synapses of an interior neuron (every tap inside the input)."""
        return self.cin_per_group * self.kernel[0] * self.kernel[1]


@dataclass(frozen=True)
class DenseGeometry:
    """Dense connectivity per position: ``F`` features at ``P`` positions, each reading the ``K``
    inputs of its position. ``weights_per_feature``: distinct weights of one feature (``n_in``;
    smaller than ``K`` when summed positions share them, 1 for an identity input)."""

    features: int
    positions: int
    fan_in: int
    weights_per_feature: int

    @property
    def out(self) -> tuple[int, int, int]:
        return (self.features, self.positions, 1)

    @property
    def inp(self) -> tuple[int, int, int]:
        return (self.fan_in, self.positions, 1)


@dataclass
class Term:
    """One input stream of a layer's synapses.

    Attributes
    ----------
    value : str
        IR value the synapses read.
    source : str
        The core layer or host unit that produces it.
    index : ndarray of int64, canonical input shape ``geometry.inp``
        Flat index of the sending element in ``source``'s output; -1 for constant zeros.
    graded : bool
        Whether messages carry an integer payload (count values) instead of binary spikes.
    shared : bool
        Whether ``index`` names a source element more than once (its events fan out to several
        of the layer's neurons; a core needs one axon for it, not one per synapse).
    """

    value: str
    source: str
    index: np.ndarray
    graded: bool
    shared: bool = False

    @cached_property
    def previous_read(self) -> tuple[np.ndarray, np.ndarray]:
        """``(position, previous)`` per input element of a dense layer, positions ascending:
        its canonical position, and the position of the previous element that reads the same
        source element (-1: none; constant zeros get their own position, never a new read).
        An element is a new axon of a tile of positions ``[s, e)`` iff ``previous < s``."""
        fan_in, positions = self.index.shape[:2]
        src = self.index[:, :, 0].T.ravel()  # position-major
        pos = np.repeat(np.arange(positions, dtype=np.int64), fan_in)
        order = np.argsort(src, kind="stable")
        prev = np.full(src.size, -1, np.int64)
        same = src[order[1:]] == src[order[:-1]]
        prev[order[1:][same]] = pos[order[:-1][same]]
        prev[src < 0] = pos[src < 0]
        return pos, prev


@dataclass
class Layer:
    """A population of compartments on neuro-cores (see the module docstring).

    Attributes
    ----------
    name : str
        The neuron op's name (its output value).
    kind : str
        One of ``LAYER_KINDS``.
    synapse : str or None
        The synapse op feeding it (``conv_synapse`` / ``dense_synapse``), if any.
    shape : tuple of int
        The neurons' shape in the IR (``neurons = prod(shape)``).
    geometry : ConvGeometry or DenseGeometry
    terms : list of Term
        One per synapse input (fan-in duplication gives several).
    neuron_of_canonical : ndarray of int64, shape ``geometry.out``
        Flat neuron index (into ``shape``) of each canonical position.
    first_layer : bool
        It reads the host's graded input directly (the real-valued first layer of the papers).
    product : str or None
        The ``spike_matmul`` an ``ssa_term`` / ``ssa_sum`` layer computes (``Network.product``).
    parts : list of Layer
        A neuron that sums several synapse ops (membrane shortcut, ``a_in = sum_k x_k``): one
        part per synapse op (named after it), each with its own ``synapse``, ``geometry``,
        ``terms`` and ``neuron_of_canonical`` over the same neurons. The layer itself then takes
        the first part's geometry (its neurons are tiled in that layout) and all parts' terms.
        Empty for a layer fed by one synapse op.
    """

    name: str
    kind: str
    synapse: str | None
    shape: tuple[int, ...]
    geometry: ConvGeometry | DenseGeometry
    terms: list[Term]
    neuron_of_canonical: np.ndarray
    first_layer: bool = False
    product: str | None = None
    parts: list["Layer"] = field(default_factory=list)

    @property
    def neurons(self) -> int:
        return int(np.prod(self.shape))

    @cached_property
    def canonical_of_neuron(self) -> np.ndarray:
        """Flat canonical position of each neuron (the inverse of ``neuron_of_canonical``)."""
        inverse = np.empty(self.neurons, np.int64)
        inverse[self.neuron_of_canonical.ravel()] = np.arange(self.neurons, dtype=np.int64)
        return inverse

    @cached_property
    def part_axes(self) -> list[tuple[tuple[int, ...], ...]]:
        """Per part, per axis of its canonical layout: the axes of the layer's canonical layout
        along which that coordinate of the neurons varies."""
        out = []
        for part in self.parts:
            flat = part.canonical_of_neuron[self.neuron_of_canonical]
            coords = np.unravel_index(flat, part.geometry.out)
            out.append(tuple(tuple(a for a in range(3) if self.geometry.out[a] > 1 and
                                   np.any(np.diff(c, axis=a) != 0)) for c in coords))
        return out

    def aligned(self, part: "Layer") -> bool:
        """Whether ``part`` lays the neurons out as the layer does (same tiles in both)."""
        return part.geometry.out == self.geometry.out and \
            np.array_equal(part.neuron_of_canonical, self.neuron_of_canonical)

    @property
    def inputs(self) -> list["Layer"]:
        """The synapse groups on the layer's cores: its ``parts``, or the layer itself."""
        return self.parts or [self]

    @property
    def synapse_ops(self) -> list[str]:
        """The synapse ops feeding the layer (one per part; none for relays)."""
        return [p.synapse for p in self.inputs if p.synapse is not None]


@dataclass
class HostUnit:
    """Work off the neuro-cores: the host's graded input, or a ``spike_matmul`` on the embedded
    CPUs.

    ``inputs``: the core layers / host units whose outputs it reads (with element counts);
    ``dense_ops``: multiply-accumulates per step if every product were computed (embedded CPUs);
    ``host_macs``: multiply-accumulates per step of a first layer computed on the host."""

    name: str
    kind: str  # "graded_input" | "bitplane_input" | "host_layer" | "spike_matmul"
    shape: tuple[int, ...]
    inputs: list[tuple[str, int]] = field(default_factory=list)
    dense_ops: int = 0
    host_macs: int = 0

    @property
    def elements(self) -> int:
        return int(np.prod(self.shape))


@dataclass(frozen=True)
class Product:
    """One ``spike_matmul`` ``y[z, m, n] = sum_k a[z, m, k] * b[z, k, n]`` (either lowering).

    Attributes
    ----------
    name : str
        The op (and its output value).
    dims : (Z, M, K, N)
        Head axes (flattened), rows of ``a``, contraction, columns of ``b``.
    kinds : (str, str)
        ``"spike"`` or ``"count"`` for ``a`` and ``b``.
    sources : (str, str)
        The core layer or host unit sending ``a`` and ``b``.
    """

    name: str
    dims: tuple[int, int, int, int]
    kinds: tuple[str, str]
    sources: tuple[str, str]

    @property
    def dense_ops(self) -> int:
        """Multiply-accumulates per step if every term were computed (= term neurons)."""
        z, m, k, n = self.dims
        return z * m * k * n

    @property
    def term_neuron(self) -> str:
        return term_neuron(*self.kinds)

    @property
    def gate(self) -> int | None:
        """The gating operand of a spike x count product (0: ``a``, 1: ``b``), else None."""
        return gate_operand(*self.kinds)

    @property
    def terms_layer(self) -> str:
        return f"{self.name}.terms"


@dataclass
class Network:
    """Core layers (in graph order), host units and SSA products of one fixed-point graph,
    with ``ssa`` the lowering of the products."""

    layers: list[Layer]
    host: list[HostUnit]
    timesteps: int
    graph: Graph
    products: list[Product] = field(default_factory=list)
    ssa: str = "host"

    def layer(self, name: str) -> Layer:
        for layer in self.layers:
            if layer.name == name:
                return layer
        raise KeyError(name)

    def unit(self, name: str) -> HostUnit:
        for unit in self.host:
            if unit.name == name:
                return unit
        raise KeyError(name)

    def product(self, name: str) -> Product:
        for p in self.products:
            if p.name == name:
                return p
        raise KeyError(name)

    def consumers(self, source: str) -> list[tuple[Layer, Term]]:
        return [(layer, t) for layer in self.layers for t in layer.terms if t.source == source]


# ----------------------------------------------------------------------------- extraction

_INDEX_OPS = (O.Reshape, O.Transpose)


def _producers(graph: Graph) -> dict[str, O.Op]:
    return {op.name: op for op in graph.ops}


def _source_index(name: str, prod: dict[str, O.Op], graph: Graph) -> tuple[str, np.ndarray]:
    """The op that sends value ``name`` and, per element of ``name``, the flat index of the
    sending element (reshapes and transposes only move elements)."""
    op = prod[name]
    if isinstance(op, O.Reshape):
        src, idx = _source_index(op.inputs[0], prod, graph)
        return src, idx.reshape(op.shape)
    if isinstance(op, O.Transpose):
        src, idx = _source_index(op.inputs[0], prod, graph)
        return src, idx.transpose(op.perm)
    spec = graph.spec(name)
    idx = np.arange(spec.size, dtype=np.int64).reshape(spec.shape)
    if isinstance(op, GradedInput) and op.pad:
        # The pad ring is constant zero: nothing is ever sent from it.
        p = op.pad
        mask = np.ones(spec.shape, dtype=bool)
        mask[:, p:spec.shape[1] - p, p:spec.shape[2] - p] = False
        idx = np.where(mask, -1, idx)
    return op.name, idx


def _term(value: str, canon, prod, graph) -> Term:
    src, idx = _source_index(value, prod, graph)
    kind = graph.spec(value).kind
    graded = kind is Kind.COUNT
    return Term(value=value, source=src, index=canon(idx), graded=graded)


def _conv_layer(name, kind, syn: ConvSynapse | O.MaxPool2d, prod, graph, shape) -> Layer:
    x = graph.spec(syn.inputs[0])
    out = graph.spec(syn.name).shape
    if isinstance(syn, O.MaxPool2d):
        geo = ConvGeometry(out=tuple(out), inp=tuple(x.shape), kernel=tuple(syn.kernel),
                           stride=tuple(syn.stride), padding=tuple(syn.padding), dilation=(1, 1),
                           groups=x.shape[0], weights_per_channel=1)
        synapse = None
    else:
        cout, cin_g, kh, kw = syn.weight.shape
        geo = ConvGeometry(out=tuple(out), inp=tuple(x.shape), kernel=(kh, kw),
                           stride=tuple(syn.stride), padding=tuple(syn.padding),
                           dilation=tuple(syn.dilation), groups=syn.groups,
                           weights_per_channel=cin_g * kh * kw)
        synapse = syn.name
    terms = [_term(v, lambda i: i, prod, graph) for v in syn.inputs]
    n = int(np.prod(out))
    return Layer(name=name, kind=kind, synapse=synapse, shape=tuple(shape), geometry=geo,
                 terms=terms, neuron_of_canonical=np.arange(n, dtype=np.int64).reshape(out))


def _dense_layer(name, kind, syn: DenseSynapse | None, inputs, prod, graph, shape,
                 reduce_axes=(), in_shape=None) -> Layer:
    """Dense (``syn``) or identity (``syn`` None) connectivity, with ``reduce_axes`` of the synapse
    output summed into each neuron (the readout, ``reduce_sum``). ``in_shape``: the shape the
    inputs broadcast to (``and`` with a size-1 axis; default the first input's)."""
    x = graph.spec(inputs[0])
    if in_shape is not None:
        x = dataclasses.replace(x, shape=tuple(in_shape))
    nd = len(x.shape)
    red = sorted({a % nd for a in reduce_axes}) if nd else []
    if syn is not None:
        axis = syn.axis % nd
        n_out, n_in = syn.weight.shape
    else:
        axis, n_out, n_in = None, 1, 1
    kept = [a for a in range(nd) if a != axis and a not in red]
    positions = int(np.prod([x.shape[a] for a in kept])) if kept else 1
    reduced = int(np.prod([x.shape[a] for a in red])) if red else 1
    geo = DenseGeometry(features=n_out, positions=positions, fan_in=n_in * reduced,
                        weights_per_feature=n_in)
    front = ([axis] if axis is not None else []) + red

    def canon(idx: np.ndarray) -> np.ndarray:
        idx = np.broadcast_to(idx, x.shape)
        moved = np.transpose(idx, front + kept) if nd else idx
        return moved.reshape(geo.fan_in, positions, 1)

    terms = [_term(v, canon, prod, graph) for v in inputs]
    # Neurons in the IR shape: the synapse output with the reduced axes removed.
    out_shape = list(x.shape)
    if axis is not None:
        out_shape[axis] = n_out
    neuron_ids = np.arange(int(np.prod(out_shape)) // reduced, dtype=np.int64)
    kept_shape = [out_shape[a] for a in range(nd) if a not in red]
    neuron_ids = neuron_ids.reshape(kept_shape) if kept_shape else neuron_ids.reshape(())
    # axes of the kept array, in order: feature axis first, then the kept positions
    kept_axes = [a for a in range(nd) if a not in red]
    order = ([kept_axes.index(axis)] if axis is not None else []) + [kept_axes.index(a)
                                                                     for a in kept]
    canon_out = np.transpose(neuron_ids, order).reshape(geo.out) if kept_shape else \
        neuron_ids.reshape(geo.out)
    if int(np.prod(shape)) != geo.features * geo.positions:
        raise UnsupportedOpError(f"op {name!r}: cannot lay out {shape} neurons over "
                                 f"{geo.features} features x {geo.positions} positions")
    return Layer(name=name, kind=kind, synapse=syn.name if syn is not None else None,
                 shape=tuple(shape), geometry=geo, terms=terms, neuron_of_canonical=canon_out)


def _product(op: O.SpikeMatmul, prod, graph) -> Product:
    a, b = (graph.spec(v) for v in op.inputs)
    kinds = tuple("spike" if s.kind is Kind.SPIKE else "count" for s in (a, b))
    sources = tuple(_source_index(v, prod, graph)[0] for v in op.inputs)
    return Product(op.name, product_dims(a.shape, b.shape), kinds, sources)


def _product_layers(op: O.SpikeMatmul, p: Product, prod, graph) -> list[Layer]:
    """The ``decompose`` lowering's term neurons and relay (``spikec.target.ssa``) as dense
    layers of one feature: the term layer's positions are the terms ``(z, m, k, n)``, each
    reading one element of ``a`` and one of ``b``; the relay's positions are ``y[z, m, n]``, each
    reading its ``K`` terms (and, for a gate, the ``K`` gating spikes again, to subtract ``A``)."""
    z, m, k, n = p.dims
    per_operand = term_indices(z, m, k, n)[:2]
    n_terms = p.dense_ops
    streams = []
    for v, idx in zip(op.inputs, per_operand):
        src, sent = _source_index(v, prod, graph)
        streams.append(Term(value=v, source=src, index=sent.ravel()[idx].reshape(1, n_terms, 1),
                            graded=graph.spec(v).kind is Kind.COUNT, shared=True))
    one = DenseGeometry(features=1, positions=n_terms, fan_in=1, weights_per_feature=1)
    terms = Layer(name=p.terms_layer, kind="ssa_term", synapse=None, shape=(n_terms,),
                  geometry=one, terms=streams,
                  neuron_of_canonical=np.arange(n_terms, dtype=np.int64).reshape(one.out),
                  product=p.name)

    def by_output(per_term: np.ndarray) -> np.ndarray:
        # terms (z, m, k, n) -> the relay's canonical input (k, (z, m, n))
        return per_term.reshape(z, m, k, n).transpose(2, 0, 1, 3).reshape(k, z * m * n, 1)

    summed = [Term(value=p.terms_layer, source=p.terms_layer,
                   index=by_output(np.arange(n_terms, dtype=np.int64)),
                   graded=p.term_neuron != "coincidence LIF")]
    if p.gate is not None:
        gate = streams[p.gate]
        summed.append(Term(value=gate.value, source=gate.source,
                           index=by_output(gate.index.ravel()), graded=False, shared=True))
    sums = DenseGeometry(features=1, positions=z * m * n, fan_in=k, weights_per_feature=1)
    relay = Layer(name=p.name, kind="ssa_sum", synapse=None, shape=graph.spec(op.name).shape,
                  geometry=sums, terms=summed,
                  neuron_of_canonical=np.arange(z * m * n, dtype=np.int64).reshape(sums.out),
                  product=p.name)
    return [terms, relay]


@dataclass
class _Extraction:
    """The state of one ``extract_network`` walk (what the ``PLACE`` handlers read and fill)."""

    graph: Graph
    ssa: str
    prod: dict[str, O.Op]
    specs: dict
    layers: list[Layer] = field(default_factory=list)
    host: list[HostUnit] = field(default_factory=list)
    products: list[Product] = field(default_factory=list)


#: What the mapper does with each fixed-point op type: ``(x: _Extraction, op) -> None``.
PLACE = OpTable("the estimator's mapper")
PLACE.refuse(set(O.OP_TYPES.values()) - FIXED_DOMAIN_OPS,
             "a float op: the estimator maps fixed-point graphs (compile the model first)")


@PLACE.register(CubaLIF, Readout)
def _place_neurons(x: _Extraction, op) -> None:
    shape = tuple(x.specs[op.name].shape)
    kind = "lif" if isinstance(op, CubaLIF) else "readout"
    if len(op.inputs) == 1:
        layer = _neuron_input(x, op, op.inputs[0], op.inputs, kind, shape)
        layer.name = op.name
        x.layers.append(layer)
        return
    # membrane shortcut: every summed synapse op lands on the neuron's cores (``Layer.parts``)
    parts = [_neuron_input(x, op, v, (v,), kind, shape) for v in op.inputs]
    first = parts[0]
    x.layers.append(Layer(name=op.name, kind=kind, synapse=first.synapse, shape=shape,
                          geometry=first.geometry, terms=[t for p in parts for t in p.terms],
                          neuron_of_canonical=first.neuron_of_canonical, parts=parts))


def _neuron_input(x: _Extraction, op, value: str, values: tuple, kind: str, shape) -> Layer:
    """The layer of neuron op ``op`` fed by the synapse op behind ``value`` (``values``: the
    op's inputs when it reads spikes or counts directly), named after that synapse op."""
    prod, graph, specs = x.prod, x.graph, x.specs
    red = tuple(op.sum_axes) if isinstance(op, Readout) else ()
    # the synapse may sit behind reshapes/transposes (token layouts)
    src_name, perm = _source_index(value, prod, graph)
    src = prod[src_name]
    moved = not np.array_equal(perm.ravel(), np.arange(perm.size))
    if isinstance(src, DenseSynapse) and moved and red:
        raise UnsupportedOpError(f"op {op.name!r}: a readout behind a reshape of its "
                                 "synapses is not supported by the mapper")
    syn_shape = specs[src_name].shape
    if isinstance(src, ConvSynapse) and red:
        return _summed_conv_layer(op, src, perm, red, x, shape)
    if isinstance(src, ConvSynapse):
        layer = _conv_layer(src_name, kind, src, prod, graph, syn_shape)
    elif isinstance(src, DenseSynapse):
        layer = _dense_layer(src_name, kind, src, src.inputs, prod, graph,
                             syn_shape if not red else shape, red)
    else:
        if len(op.inputs) > 1:
            raise UnsupportedOpError(f"op {op.name!r}: input {value!r} of a neuron summing "
                                     "several inputs is not a synapse op")
        layer = _dense_layer(op.name, kind, None, values, prod, graph, shape, red)
        moved = False
    if moved:
        # canonical positions index the synapse's output; neurons follow the op's layout
        inverse = np.empty(perm.size, np.int64)
        inverse[perm.ravel()] = np.arange(perm.size)
        layer.neuron_of_canonical = inverse[layer.neuron_of_canonical]
    layer.shape = tuple(shape)
    return layer


def _summed_conv_layer(op, syn: ConvSynapse, perm: np.ndarray, red: tuple, x: _Extraction,
                       shape) -> Layer:
    """A readout that sums a convolution's output over all its positions (a head composed with
    a conv term, Spikingformer): one compartment per output channel, its synapses every
    ``(input channel, tap, position)`` inside the input, as a dense layer of one position whose
    stream names each input element once per synapse (``Term.shared``: one axon per element)."""
    cout, cin_g, kh, kw = syn.weight.shape
    c, h, w = x.specs[syn.name].shape
    nd = perm.ndim
    red = sorted({a % nd for a in red})
    kept = [a for a in range(nd) if a not in red]
    rows = np.transpose(perm, kept + red).reshape(int(np.prod(shape)), -1)
    chans = rows // (h * w)
    if syn.groups != 1 or rows.shape[1] != h * w or rows.shape[0] != cout or \
            not np.array_equal(np.sort(chans[:, 0]), np.arange(cout)) or \
            not (chans == chans[:, :1]).all():
        raise UnsupportedOpError(f"op {op.name!r}: a readout that sums {syn.name!r} other than "
                                 "over all positions of each channel (ungrouped) is not "
                                 "supported by the mapper")
    src, idx = _source_index(syn.inputs[0], x.prod, x.graph)
    _, h_in, w_in = idx.shape

    def taps(n_out, n_in, k, s, p, d):  # input row of every (output row, tap) inside the input
        i = np.arange(n_out)[:, None] * s - p + np.arange(k)[None, :] * d
        return i[(i >= 0) & (i < n_in)]

    r = taps(h, h_in, kh, syn.stride[0], syn.padding[0], syn.dilation[0])
    q = taps(w, w_in, kw, syn.stride[1], syn.padding[1], syn.dilation[1])
    reads = idx[:, r][:, :, q].reshape(-1, 1, 1)
    geo = DenseGeometry(features=cout, positions=1, fan_in=reads.shape[0],
                        weights_per_feature=cin_g * kh * kw)
    term = Term(value=syn.inputs[0], source=src, index=reads,
                graded=x.graph.spec(syn.inputs[0]).kind is Kind.COUNT, shared=True)
    noc = np.empty(cout, np.int64)
    noc[chans[:, 0]] = np.arange(cout)
    return Layer(name=syn.name, kind="readout", synapse=syn.name, shape=tuple(shape),
                 geometry=geo, terms=[term], neuron_of_canonical=noc.reshape(geo.out))


@PLACE.register(O.MaxPool2d)
def _place_maxpool(x: _Extraction, op) -> None:
    x.layers.append(_conv_layer(op.name, "maxpool", op, x.prod, x.graph, x.specs[op.name].shape))


@PLACE.register(O.Add, O.IAND, O.AND)
def _place_join(x: _Extraction, op) -> None:
    kind = op.OPCODE                    # a layer kind: "add", "iand" or "and"
    shape = x.specs[op.name].shape      # "and" broadcasts size-1 axes
    x.layers.append(_dense_layer(op.name, kind, None, op.inputs, x.prod, x.graph, shape,
                                 in_shape=shape))


@PLACE.register(O.ReduceSum)
def _place_reduce_sum(x: _Extraction, op) -> None:
    # a graded relay per output; each reads the elements summed into it (weight 1)
    x.layers.append(_dense_layer(op.name, "reduce_sum", None, op.inputs, x.prod, x.graph,
                                 x.specs[op.name].shape, reduce_axes=op.axes))


@PLACE.register(GradedInput)
def _place_input(x: _Extraction, op) -> None:
    x.host.append(HostUnit(op.name, "graded_input", tuple(x.specs[op.name].shape)))


@PLACE.register(O.SpikeMatmul)
def _place_product(x: _Extraction, op) -> None:
    prod, graph, specs = x.prod, x.graph, x.specs
    x.products.append(_product(op, prod, graph))
    if x.ssa == SSALowering.DECOMPOSE:
        x.layers.extend(_product_layers(op, x.products[-1], prod, graph))
        return
    ins = [(_source_index(v, prod, graph)[0], specs[v].size) for v in op.inputs]
    x.host.append(HostUnit(op.name, "spike_matmul", tuple(specs[op.name].shape), ins,
                           op.dense_ops([specs[v] for v in op.inputs], specs[op.name])))


@PLACE.register(ConvSynapse, DenseSynapse, O.Output, *_INDEX_OPS)
def _place_nothing(x: _Extraction, op) -> None:
    """Synapses are placed with the neurons that read them; outputs and index ops are views."""


def extract_network(graph: Graph, ssa: str = "host") -> Network:
    """The core layers and host units of a fixed-point graph, in graph order, with every
    ``spike_matmul`` lowered as ``ssa`` (``"host"``: a host unit; ``"decompose"``: two core
    layers).

    Raises
    ------
    UnsupportedOpError
        For a graph that is not fixed-point, an op the mapper cannot place (names the op), or an
        unknown ``ssa`` lowering.
    """
    if graph.domain != Domain.FIXED:
        raise UnsupportedOpError("the estimator maps fixed-point graphs; compile the model first "
                                 "(spikec compile, or pass the model file to spikec estimate)")
    if ssa not in LOWERINGS:
        raise UnsupportedOpError(f"unknown SSA lowering {ssa!r}; choose one of {LOWERINGS}")
    x = _Extraction(graph, ssa, _producers(graph), graph.specs)
    for op in graph.ops:
        PLACE.lookup(op)(x, op)
    from spikec.estimate.input_encoding import apply_input_encoding

    apply_input_encoding(x, graph.meta.get("input_encoding", "graded"))
    pixels = {u.name for u in x.host if u.kind in ("graded_input", "bitplane_input")}
    for layer in x.layers:
        for part in [layer] + layer.parts:   # a membrane shortcut: each synapse op on its own
            part.first_layer = part.product is None and any(t.source in pixels
                                                            for t in part.terms)
    return Network(layers=x.layers, host=x.host, timesteps=graph.timesteps, graph=graph,
                   products=x.products, ssa=ssa)

