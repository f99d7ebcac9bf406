"""A synapse's int32 sums left in its GEMM's layout, for the LIF that reads them.

The small-map convolutions and the token-layout dense products of the int8 path compute one GEMM
whose output is channel-major: ``y[o, ((t B + b) Hs + i) R + j]``, sample b of step t at position
``(i, j)`` of a grid of ``Hs x R`` positions per sample, of which the first ``Ho`` rows and ``Wo``
columns are the op's outputs (the others are the wrapped windows of ``linalg._conv_shifted_rows``;
a dense product has the grid ``1 x N`` of its tokens). The op's value is then made by one more pass
(``linalg._to_nchw``: crop, move to ``[T, B, O, Ho, Wo]``, shift each channel by its weight
exponent), which the LIF reads once more.

``GridSums`` stands for that value without making it. A memoryless LIF
(``CubaLIFLayer.run``) runs over the GEMM's own layout, channel by channel in runs of a whole
grid, shifts while it reads, and writes its spikes on the same grid: it returns them as a strided
view in the logical order ``[T, B, *shape]`` (numpy's semantics make the layout invisible to
every later op; those that need contiguous data copy, as they would). Measured on the shipped
V2's layers (batch 8, T = 4): 0.05-0.08 ms per layer where the output pass and the LIF took
0.12-0.22 ms. A reshape makes another ``GridSums`` where the grid is not cropped; every other
reader, a recorded value and the step-by-step path get ``materialize()``, the array the synapse
would have made. The integers are the same either way.
"""
from __future__ import annotations

import numpy as np

from spikec.ir import fixed as F
from spikec.ir import ops as O
from spikec.sim import linalg as la


class GridSums:
    """``floor(sums * 2**shift[o])`` of a synapse, not yet moved out of its GEMM's layout.

    Parameters
    ----------
    y : int32 [O, T' B Hs R], contiguous: the GEMM's output (``T' = 1`` where the one computed
        step stands for all ``steps``: a repeated input).
    steps, batch : T and B.
    grid : ``(Hs, R)`` positions per sample in ``y``; ``crop``: ``(Ho, Wo)`` of them are outputs.
    shift : int32 [O], the arithmetic shift of each output channel.
    shape : the per-sample shape of the value: ``(O, Ho, Wo)``, or ``(O, N)`` for a grid ``(1, N)``.
    key : names the shift and grid (the synapse's name), for readers' caches.
    repeated : ``y`` holds one step, which stands for every step (a repeated input).
    """

    __slots__ = ("y", "steps", "batch", "grid", "crop", "shift", "sample_shape", "key",
                 "repeated")

    def __init__(self, y, steps: int, batch: int, grid, crop, shift, shape, key: str,
                 repeated: bool = False):
        self.y, self.steps, self.batch = y, steps, batch
        self.grid, self.crop, self.shift = tuple(grid), tuple(crop), shift
        self.sample_shape, self.key, self.repeated = tuple(shape), key, repeated

    @property
    def shape(self) -> tuple:
        return (self.steps, self.batch) + self.sample_shape

    def materialize(self) -> np.ndarray:
        """The value, int32 [T, B, *shape] (a broadcast view over T for a repeated input)."""
        nchw = la._to_nchw(self.y, self.grid, self.crop, self.shift)
        lead = (1 if self.repeated else self.steps, self.batch)
        v = nchw.reshape(lead + self.sample_shape)
        return np.broadcast_to(v, self.shape) if self.repeated else v

    def reshape(self, shape) -> "GridSums | None":
        """The same sums with the per-sample shape ``shape[2:]`` (``shape`` [T, B, ...]), or None
        where the grid cannot express it (a cropped grid, another channel count, rank > 3)."""
        new = tuple(shape[2:])
        hs, r = self.grid
        if self.crop != self.grid or not new or new[0] != self.sample_shape[0] or \
                int(np.prod(new[1:])) != hs * r or len(new) > 3 or tuple(shape[:2]) != self.shape[:2]:
            return None
        grid = (1, new[1]) if len(new) == 2 else (new[1], new[2]) if len(new) == 3 else (1, 1)
        return GridSums(self.y, self.steps, self.batch, grid, grid, self.shift, new,
                        f"{self.key}/{new}", self.repeated)

    def spikes(self, out: np.ndarray) -> np.ndarray:
        """The logical view ``[T, B, *shape]`` of spikes ``out`` [O, T, B, Hs R] on this grid."""
        o = self.sample_shape[0]
        (hs, r), (ho, wo) = self.grid, self.crop
        v = out.reshape(o, self.steps, self.batch, hs, r)[:, :, :, :ho, :wo]
        v = v.transpose(1, 2, 0, 3, 4)
        return v.reshape(self.shape)          # a view: drops or keeps the unit row axis

    def grid_state(self, v: np.ndarray) -> np.ndarray:
        """The logical view ``[B, *shape]`` of a state ``v`` [O, B, Hs R] on this grid."""
        o = self.sample_shape[0]
        (hs, r), (ho, wo) = self.grid, self.crop
        return v.reshape(o, self.batch, hs, r)[:, :, :ho, :wo].transpose(1, 0, 2, 3).reshape(
            (self.batch,) + self.sample_shape)

    def on_grid(self, x: np.ndarray, dtype) -> np.ndarray:
        """A per-neuron constant ``x`` (broadcastable to the per-sample shape) laid on the grid:
        ``[O, Hs R]`` in ``dtype``, zero outside the crop."""
        o = self.sample_shape[0]
        (hs, r), (ho, wo) = self.grid, self.crop
        g = np.zeros((o, hs, r), dtype)
        g[:, :ho, :wo] = np.broadcast_to(x, self.sample_shape).reshape(o, ho, wo)
        return g.reshape(o, hs * r)


def materialized(x):
    """``x`` as an array (``GridSums`` are made; anything else is returned as is)."""
    return x.materialize() if isinstance(x, GridSums) else x


def lif_fed(graph, synapses: dict) -> frozenset:
    """The synapses with one input whose every reader is a one-input LIF, directly or through
    reshapes: their int8 sums may reach the LIF as ``GridSums``."""
    readers: dict[str, list] = {}
    for op in graph.ops:
        for i in op.inputs:
            readers.setdefault(i, []).append(op)

    def lif_only(name: str) -> bool:
        ops = readers.get(name, ())
        return bool(ops) and all((isinstance(c, F.CubaLIF) and len(c.inputs) == 1)
                                 or (isinstance(c, O.Reshape) and lif_only(c.name)) for c in ops)

    return frozenset(name for name, syn in synapses.items()
                     if len(syn.op.inputs) == 1 and lif_only(name))
