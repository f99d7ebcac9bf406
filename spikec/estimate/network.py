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

import numpy as np

from spikec.errors import UnsupportedOpError
from spikec.estimate.netmodel import (HOST_INPUT_KINDS, INPUT_PLANES, LAYER_KINDS,  # noqa: F401
                                      ConvGeometry, DenseGeometry, HostUnit, Layer, Network,
                                      Product, Term)   # the data model, re-exported
from spikec.ir import ops as O
from spikec.ir.dispatch import OpTable
from spikec.ir.fixed import (FIXED_DOMAIN_OPS, ConvSynapse, CubaLIF, DenseSynapse, GradedInput,
                             Readout)
from spikec.ir.graph import Graph
from spikec.ir.types import Domain, Kind
from spikec.target.ssa import LOWERINGS, SSALowering, product_dims, term_indices


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

