"""Partition every core layer onto neuro-cores under all per-core limits at once.

A layer's neurons, in their canonical ``(C, H, W)`` layout (``spikec.estimate.network``), are cut
into rectangular tiles of ``c_t x h_t x w_t`` neurons, one tile per core. Per core the limits are

* neurons: ``c_t * h_t * w_t <= neurons_per_core``;
* synaptic memory, with the real encoding: an *expanded* synapse (dense matrices; convolutions on
  chips without weight sharing) stores ``weight_bits + synapse_index_bits``; a *shared* kernel
  (convolutions, and dense synapses repeated at several positions, on chips with
  ``conv_weight_sharing``) stores ``weight_bits`` per distinct weight of the channels on the core;
* input axons: one per distinct source neuron (or host element) whose spikes reach the core
  (counted exactly where a stream reads a source element from several neurons, ``Term.shared``);
* output axons: one per (source neuron, destination core) pair (checked once all layers are
  placed; a layer whose cores exceed it is cut finer and everything is evaluated again).

The search is exhaustive over tile sizes of the form ``ceil(n / k)`` on each axis and picks the
tiling with the fewest cores, then the fewest input axons in total (less traffic). A neuron whose
fan-in alone exceeds a core's axons or memory has its fan-in split over ``f`` partial-sum cores,
whose sums travel as graded spikes to combining compartments (only on chips with graded spikes;
otherwise the layer does not fit).
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from spikec.errors import CapacityError, ProfileError
from spikec.estimate.network import ConvGeometry, DenseGeometry, Layer

LIMITS = ("neurons", "synaptic_memory", "input_axons", "output_axons")


@dataclass(frozen=True)
class CoreLimits:
    """What one neuro-core holds, and how synapses are stored (from a hardware profile).

    ``None`` for a limit the profile does not know: not checked."""

    neurons: int
    memory_bits: int | None
    input_axons: int | None
    output_axons: int | None
    weight_bits: int
    index_bits: int
    conv_sharing: bool
    graded: bool

    @classmethod
    def from_profile(cls, profile) -> "CoreLimits":
        cap, fmt = profile.capacity, profile.formats
        if fmt.weight_bits is None:
            raise ProfileError(f"{profile.path}: formats.weight_bits: unknown, but the mapper "
                               "needs it to size synaptic memory")
        if cap.synapse_index_bits is None:
            raise ProfileError(f"{profile.path}: capacity.synapse_index_bits: unknown, but the "
                               "mapper needs it to size synaptic memory")
        return cls(neurons=cap.neurons_per_core, memory_bits=cap.synaptic_memory_bits_per_core,
                   input_axons=cap.input_axons_per_core, output_axons=cap.output_axons_per_core,
                   weight_bits=fmt.weight_bits, index_bits=cap.synapse_index_bits,
                   conv_sharing=bool(cap.conv_weight_sharing), graded=bool(fmt.graded_spikes))

    def value(self, limit: str) -> int | None:
        return {"neurons": self.neurons, "synaptic_memory": self.memory_bits,
                "input_axons": self.input_axons, "output_axons": self.output_axons}[limit]


LIMIT_FIELDS = {"neurons": "capacity.neurons_per_core",
                "synaptic_memory": "capacity.synaptic_memory_bits_per_core",
                "input_axons": "capacity.input_axons_per_core",
                "output_axons": "capacity.output_axons_per_core"}


@dataclass(frozen=True)
class Tiling:
    """How a layer is cut: tile ``(c_t, h_t, w_t)`` of its canonical neuron array, ``fanin_split``
    partial-sum cores per tile (1: none) and ``combine_per_core`` combining neurons per core."""

    tile: tuple[int, int, int]
    grid: tuple[int, int, int]
    fanin_split: int = 1
    combine_per_core: int = 0
    combine_cores: int = 0

    @property
    def tiles(self) -> int:
        return self.grid[0] * self.grid[1] * self.grid[2]

    @property
    def cores(self) -> int:
        return self.tiles * self.fanin_split + self.combine_cores


def shares_weights(layer: Layer, limits: CoreLimits) -> bool:
    """Whether the layer's weights are stored once per core (convolution-like, chip shares)."""
    g = layer.geometry
    if not limits.conv_sharing:
        return False
    return isinstance(g, ConvGeometry) or (g.positions > 1 and g.weights_per_feature > 1)


def synapse_bits(layer: Layer, limits: CoreLimits) -> int:
    """Bits of one expanded synapse."""
    return limits.weight_bits + limits.index_bits


# ----------------------------------------------------------------------------- axis helpers

def _tile_sizes(n: int) -> list[int]:
    """Distinct tile lengths ``ceil(n / k)``, k = 1..n (largest first)."""
    out, k = [], 1
    while k <= n:
        t = -(-n // k)
        out.append(t)
        k = -(-n // (t - 1)) if t > 1 else n + 1
    return out


def conv_rows(a: int, b: int, n_in: int, k: int, s: int, p: int, d: int) -> np.ndarray:
    """Input rows read by output rows ``a..b-1`` (inside the input)."""
    i = np.arange(a, b)[:, None] * s - p + np.arange(k)[None, :] * d
    return np.unique(i[(i >= 0) & (i < n_in)])


@lru_cache(maxsize=4096)
def _rows_max(n_out: int, t: int, n_in: int, k: int, s: int, p: int, d: int) -> int:
    return max(conv_rows(a, min(a + t, n_out), n_in, k, s, p, d).size
               for a in range(0, n_out, t))


def channel_span(a: int, b: int, g: ConvGeometry) -> int:
    """Input channels read by output channels ``a..b-1``."""
    return ((b - 1) // g.cout_per_group - a // g.cout_per_group + 1) * g.cin_per_group


def _span_max(g: ConvGeometry, t: int) -> int:
    return max(channel_span(a, min(a + t, g.out[0]), g) for a in range(0, g.out[0], t))


# ----------------------------------------------------------------------------- worst case per tile

def worst_tile(layer: Layer, tile: tuple[int, int, int], limits: CoreLimits, f: int = 1) -> dict:
    """Upper bounds of one core's neurons, synaptic memory (bits) and input axons for ``tile``
    (interior tiles, every tap inside the input), with the fan-in split ``f`` ways. A layer with
    ``parts`` (several synapse ops) holds every part's synapses and axons on each core."""
    if layer.parts:
        out = {"neurons": tile[0] * tile[1] * tile[2], "synaptic_memory": 0, "input_axons": 0}
        for part, axes in zip(layer.parts, layer.part_axes):
            w = worst_tile(part, tile, limits, f) if layer.aligned(part) else \
                _part_bound(part, axes, tile, limits, f)
            out["synaptic_memory"] += w["synaptic_memory"]
            out["input_axons"] += w["input_axons"]
        return out
    g = layer.geometry
    c_t, h_t, w_t = tile
    n = c_t * h_t * w_t
    terms = len(layer.terms)
    if isinstance(g, ConvGeometry):
        span = _span_max(g, c_t)
        rows = _rows_max(g.out[1], h_t, g.inp[1], g.kernel[0], g.stride[0], g.padding[0],
                         g.dilation[0])
        cols = _rows_max(g.out[2], w_t, g.inp[2], g.kernel[1], g.stride[1], g.padding[1],
                         g.dilation[1])
        axons = -(-span // f) * rows * cols * terms
        shared = c_t * -(-g.weights_per_channel // f) * limits.weight_bits * terms
        expanded = n * -(-g.fan_in // f) * synapse_bits(layer, limits) * terms
    else:
        axons = sum(-(-shared_reads(t, h_t) // f) if t.shared else h_t * -(-g.fan_in // f)
                    for t in layer.terms)
        shared = c_t * -(-g.weights_per_feature // f) * limits.weight_bits * terms
        expanded = n * -(-g.fan_in // f) * synapse_bits(layer, limits) * terms
    memory = shared if shares_weights(layer, limits) else expanded
    return {"neurons": n, "synaptic_memory": memory, "input_axons": axons}


def _part_bound(part: Layer, axes, tile: tuple[int, int, int], limits: CoreLimits,
                f: int) -> dict:
    """Bounds for a part laid out otherwise than its layer's tiles: a tile's neurons span, on
    each axis of the part's layout, at most the tile's extent along the layer axes that this
    coordinate follows (``Layer.part_axes``), taken as a box of the part's layout."""
    g = part.geometry
    box = tuple(min(g.out[k], int(np.prod([tile[a] for a in axes[k]]))) for k in range(3))
    w = worst_tile(part, box, limits, f)
    n = tile[0] * tile[1] * tile[2]
    if not shares_weights(part, limits):  # every neuron its own synapses: at most n of them
        w["synaptic_memory"] = min(w["synaptic_memory"], n * -(-g.fan_in // f) *
                                   synapse_bits(part, limits) * len(part.terms))
    return w


def part_region(layer: Layer, part: Layer, r: tuple[int, ...]):
    """Where the neurons of ``layer``'s tile ``r`` sit in ``part``'s canonical layout:
    ``(region, positions)``, the region ``r`` itself and None for an aligned part, else the
    bounding box of the neurons' flat canonical positions ``positions`` in the part."""
    if part is layer or layer.aligned(part):
        return r, None
    c0, c1, h0, h1, w0, w1 = r
    ids = layer.neuron_of_canonical[c0:c1, h0:h1, w0:w1].ravel()
    pos = part.canonical_of_neuron[ids]
    co = np.unravel_index(pos, part.geometry.out)
    return tuple(int(v) for a in co for v in (a.min(), a.max() + 1)), pos


def shared_reads(term, rows: int) -> int:
    """The most distinct source elements that one tile of ``rows`` consecutive positions of a
    dense layer reads through ``term`` (tiles aligned at multiples of ``rows``)."""
    pos, prev = term.previous_read
    tile = pos // rows
    new = prev < tile * rows
    return int(np.bincount(tile[new]).max()) if new.any() else 0


def _fits(w: dict, limits: CoreLimits) -> bool:
    return all(limits.value(k) is None or w[k] <= limits.value(k) for k in w)


def _fanin_units(layer: Layer) -> int:
    if layer.parts:
        return max(_fanin_units(p) for p in layer.parts)
    g = layer.geometry
    return g.cin_per_group if isinstance(g, ConvGeometry) else g.fan_in


def _combine_per_core(layer: Layer, limits: CoreLimits, f: int) -> int:
    n = limits.neurons
    if limits.input_axons is not None:
        n = min(n, limits.input_axons // f)
    if limits.memory_bits is not None:
        n = min(n, limits.memory_bits // (f * synapse_bits(layer, limits)))
    return n


def search_tiling(layer: Layer, limits: CoreLimits, max_neurons: int | None = None) -> Tiling:
    """The tiling of ``layer`` with the fewest cores under ``limits``.

    With ``max_neurons`` (at most that many neurons per tile: used to relieve the layer's output
    axons) the tiling keeps as few channel tiles as it can and cuts space instead, so that the
    layer's *sources* do not reach more of its cores per spike (cutting channels multiplies
    every source's fan-out; cutting space adds at most the kernel's overlap).

    Raises
    ------
    CapacityError
        When not even one neuron fits a core, naming the layer and the limit.
    """
    c, h, w = layer.geometry.out
    cap = limits.neurons if max_neurons is None else min(limits.neurons, max_neurons)
    candidates = [(ct, ht, wt) for ct in _tile_sizes(c) for ht in _tile_sizes(h)
                  for wt in _tile_sizes(w) if ct * ht * wt <= cap]
    f = 1
    units = _fanin_units(layer)
    while True:
        best = None
        for tile in candidates:
            grid = (-(-c // tile[0]), -(-h // tile[1]), -(-w // tile[2]))
            tiles = grid[0] * grid[1] * grid[2]
            rank = (tiles,) if max_neurons is None else (grid[0], tiles)
            if best is not None and rank > best[0][:len(rank)]:
                continue  # cannot beat the best: skip the bound (costly for shared streams)
            wc = worst_tile(layer, tile, limits, f)
            if not _fits(wc, limits):
                continue
            key = rank + (tiles * wc["input_axons"], -tile[0])
            if best is None or key < best[0]:
                best = (key, tile, grid)
        if best is not None:
            if f == 1:
                return Tiling(best[1], best[2])
            per = _combine_per_core(layer, limits, f)
            return Tiling(best[1], best[2], f, per, -(-layer.neurons // per))
        if f == 1:
            single = worst_tile(layer, (1, 1, 1), limits, 1)
            bad = next(k for k in single if limits.value(k) is not None
                       and single[k] > limits.value(k))
            if not limits.graded:
                raise CapacityError(
                    f"layer {layer.name!r}: one neuron needs {single[bad]:,} "
                    f"{_unit(bad)}, more than {LIMIT_FIELDS[bad]} = {limits.value(bad):,}, and "
                    "the chip has no graded spikes to split its fan-in over partial sums")
        if f >= units:
            raise CapacityError(
                f"layer {layer.name!r}: does not fit a core even with its fan-in split {f} ways "
                f"(limits: {limits.neurons:,} neurons, {limits.memory_bits} memory bits, "
                f"{limits.input_axons} input axons per core)")
        f = min(units, f * 2)
        if _combine_per_core(layer, limits, f) < 1:
            raise CapacityError(f"layer {layer.name!r}: its fan-in needs {f} partial sums per "
                                "neuron, more than a core's input axons or memory can combine")


def _unit(limit: str) -> str:
    return {"neurons": "neurons", "synaptic_memory": "bits of synaptic memory",
            "input_axons": "input axons", "output_axons": "output axons"}[limit]


def tile_ranges(tiling: Tiling, out: tuple[int, int, int]):
    """``(c0, c1, h0, h1, w0, w1)`` of every tile, spatial tiles outer, channels inner (cores of
    one image region sit next to each other)."""
    c_t, h_t, w_t = tiling.tile
    for h0 in range(0, out[1], h_t):
        for w0 in range(0, out[2], w_t):
            for c0 in range(0, out[0], c_t):
                yield (c0, min(c0 + c_t, out[0]), h0, min(h0 + h_t, out[1]),
                       w0, min(w0 + w_t, out[2]))


def conv_valid_taps(n_out: int, n_in: int, k: int, s: int, p: int, d: int) -> np.ndarray:
    """Per output row, the kernel taps that fall inside the input."""
    i = np.arange(n_out)[:, None] * s - p + np.arange(k)[None, :] * d
    return ((i >= 0) & (i < n_in)).sum(axis=1)


def receptive_field(layer: Layer, r: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Canonical input channels, rows and columns read by the tile ``r``."""
    g = layer.geometry
    c0, c1, h0, h1, w0, w1 = r
    if isinstance(g, DenseGeometry):
        return np.arange(g.fan_in), np.arange(h0, h1), np.arange(w0, w1)
    gs0, gs1 = c0 // g.cout_per_group, (c1 - 1) // g.cout_per_group
    chans = np.arange(gs0 * g.cin_per_group, (gs1 + 1) * g.cin_per_group)
    rows = conv_rows(h0, h1, g.inp[1], g.kernel[0], g.stride[0], g.padding[0], g.dilation[0])
    cols = conv_rows(w0, w1, g.inp[2], g.kernel[1], g.stride[1], g.padding[1], g.dilation[1])
    return chans, rows, cols
