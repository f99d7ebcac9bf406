"""The estimator's data model of a mapped network: conv and dense geometries, core layers (with
the parts of a neuron that sums several synapse ops), host units, attention products and the
network they form. ``spikec.estimate.network`` builds them from a fixed-point graph; its module
docstring says what each stands for."""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

import numpy as np

from spikec.ir.graph import Graph
from spikec.target.ssa import gate_operand, term_neuron


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
