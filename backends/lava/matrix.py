"""A small integer sparse matrix (coordinate form) for building synapses without scipy.

spikec's core depends on numpy only; the plan builder uses this class for every synaptic weight
matrix and writes it in CSR form (``data``, ``indices``, ``indptr``), which the Lava runtime turns
into a ``scipy.sparse.csr_matrix`` (scipy comes with lava-nc).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from spikec.memory import require_memory


@dataclass(frozen=True)
class SynapseMatrix:
    """``W[rows[i], cols[i]] = vals[i]`` (duplicates summed), integer, shape ``[n_out, n_in]``."""

    rows: np.ndarray
    cols: np.ndarray
    vals: np.ndarray
    shape: tuple[int, int]

    @staticmethod
    def build(rows, cols, vals, shape) -> "SynapseMatrix":
        rows = np.asarray(rows, np.int64).ravel()
        cols = np.asarray(cols, np.int64).ravel()
        vals = np.broadcast_to(np.asarray(vals, np.int64), rows.shape).ravel()
        return SynapseMatrix(rows, cols, vals, (int(shape[0]), int(shape[1]))).canonical()

    @staticmethod
    def identity(n: int, value: int = 1) -> "SynapseMatrix":
        i = np.arange(n, dtype=np.int64)
        return SynapseMatrix(i, i, np.full(n, value, np.int64), (n, n))

    def canonical(self) -> "SynapseMatrix":
        """Sorted by (row, col), duplicates summed, zeros dropped."""
        if self.vals.size == 0:
            return self
        key = self.rows * self.shape[1] + self.cols
        order = np.argsort(key, kind="stable")
        key, vals = key[order], self.vals[order]
        uniq, start = np.unique(key, return_index=True)
        summed = np.add.reduceat(vals, start)
        keep = summed != 0
        uniq, summed = uniq[keep], summed[keep]
        return SynapseMatrix(uniq // self.shape[1], uniq % self.shape[1], summed, self.shape)

    @property
    def nnz(self) -> int:
        return int(self.vals.size)

    def __neg__(self) -> "SynapseMatrix":
        return SynapseMatrix(self.rows, self.cols, -self.vals, self.shape)

    def keep(self, mask: np.ndarray) -> "SynapseMatrix":
        """The entries where ``mask`` (one bool per entry) is true."""
        return SynapseMatrix(self.rows[mask], self.cols[mask], self.vals[mask], self.shape)

    def take_rows(self, rows: np.ndarray) -> "SynapseMatrix":
        """``W[rows]``: row ``i`` of the result is row ``rows[i]``."""
        where = np.full(self.shape[0], -1, np.int64)
        where[np.asarray(rows, np.int64)] = np.arange(len(rows))
        new = where[self.rows]
        ok = new >= 0
        return SynapseMatrix(new[ok], self.cols[ok], self.vals[ok], (len(rows), self.shape[1]))

    def take_cols(self, cols: np.ndarray) -> "SynapseMatrix":
        """``W[:, cols]``: column ``j`` of the result is column ``cols[j]``."""
        where = np.full(self.shape[1], -1, np.int64)
        where[np.asarray(cols, np.int64)] = np.arange(len(cols))
        new = where[self.cols]
        ok = new >= 0
        return SynapseMatrix(self.rows[ok], new[ok], self.vals[ok], (self.shape[0], len(cols)))

    def mask_rows(self, row_mask: np.ndarray) -> "SynapseMatrix":
        """Zero every row where ``row_mask`` is false (same shape)."""
        return self.keep(np.asarray(row_mask, bool)[self.rows])

    def csr(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(data, indices, indptr) of the CSR form (entries are kept sorted by ``canonical``)."""
        m = self.canonical()
        indptr = np.zeros(self.shape[0] + 1, np.int64)
        np.add.at(indptr, m.rows + 1, 1)
        return m.vals, m.cols, np.cumsum(indptr)

    def toarray(self) -> np.ndarray:
        out = np.zeros(self.shape, np.int64)
        np.add.at(out, (self.rows, self.cols), self.vals)
        return out


# ----------------------------------------------------------------------------- unrolled synapses
#: Bytes the unrolling holds per synapse at its peak: rows, cols and values in int64, and the
#: same again twice while ``canonical`` sorts them.
UNROLL_BYTES_PER_SYNAPSE = 72


def guard_synapses(nnz: int, what: str, avoid: str = "") -> None:
    """Refuse (``MemoryBudgetError``, one line) before building ``nnz`` synapses for ``what``
    when they would not fit in the memory this machine has (or ``SPIKEC_MEMORY_LIMIT``)."""
    require_memory(float(nnz) * UNROLL_BYTES_PER_SYNAPSE, f"{what} ({nnz:,} synapses)",
                   avoid=avoid)


def _guard(nnz: int, what: str, avoid: str) -> None:
    guard_synapses(nnz, f"unrolling {what} into Lava Sparse synapses", avoid)


def _rows(rows, n: int) -> np.ndarray:
    return np.arange(n, dtype=np.int64) if rows is None else np.asarray(rows, np.int64)


def unrolled_conv(op, in_shape, out_shape, rows=None, *, avoid: str = "") -> SynapseMatrix:
    """The unrolled convolution ``W[rows]`` over flat IR (C, H, W) values (zero padding: taps
    outside the input are absent): row ``i`` is output neuron ``rows[i]`` (all when None).

    Built one kernel tap at a time; refused (``MemoryBudgetError``) before allocating when the
    synapses would not fit in memory."""
    cout, cin_g, kh, kw = op.weight.shape
    _, H, W = in_shape
    _, Ho, Wo = out_shape
    r = _rows(rows, cout * Ho * Wo)
    _guard(r.size * cin_g * kh * kw, f"conv synapse {op.name!r}", avoid)
    o, ij = r // (Ho * Wo), r % (Ho * Wo)
    i, j = ij // Wo, ij % Wo
    cin = (o // (cout // op.groups))[:, None] * cin_g + np.arange(cin_g)[None, :]   # [n, cin_g]
    pieces = []
    for u in range(kh):
        for v in range(kw):
            y = op.stride[0] * i + op.dilation[0] * u - op.padding[0]
            x = op.stride[1] * j + op.dilation[1] * v - op.padding[1]
            ok = np.flatnonzero((y >= 0) & (y < H) & (x >= 0) & (x < W))
            cols = (cin[ok] * H + y[ok, None]) * W + x[ok, None]
            vals = op.weight[o[ok], :, u, v].astype(np.int64)
            pieces.append((np.repeat(ok, cin_g), cols.ravel(), vals.ravel()))
    rr, cc, vv = (np.concatenate(p) for p in zip(*pieces))
    return SynapseMatrix.build(rr, cc, vv, (r.size, int(np.prod(in_shape))))


def unrolled_axis(op, in_shape, rows=None, *, avoid: str = "") -> SynapseMatrix:
    """Weights ``[n_out, n_in]`` applied along ``op.axis`` of a flat value of ``in_shape``:
    ``W[rows]`` of the ``[out_size, in_size]`` matrix (refused before allocating when too big)."""
    w = op.weight
    a = op.axis % len(in_shape)
    n_out, n_in = w.shape
    pre = int(np.prod(in_shape[:a], dtype=np.int64))
    post = int(np.prod(in_shape[a + 1:], dtype=np.int64))
    r = _rows(rows, pre * n_out * post)
    _guard(r.size * n_in, f"dense synapse {op.name!r}", avoid)
    p, o, q = r // (n_out * post), (r // post) % n_out, r % post
    cols = (p[:, None] * n_in + np.arange(n_in)[None, :]) * post + q[:, None]
    vals = w[o].astype(np.int64)
    return SynapseMatrix.build(np.repeat(np.arange(r.size), n_in), cols.ravel(), vals.ravel(),
                               (r.size, pre * n_in * post))


def unrolled_window(op, in_shape, out_shape, *, avoid: str = "") -> SynapseMatrix:
    """Ones from every element of each pooling window (padding taps absent)."""
    C, H, W = in_shape
    _, Ho, Wo = out_shape
    _guard(C * Ho * Wo * op.kernel[0] * op.kernel[1], f"max pool {op.name!r}", avoid)
    c, u, v, i, j = np.meshgrid(np.arange(C), np.arange(op.kernel[0]), np.arange(op.kernel[1]),
                                np.arange(Ho), np.arange(Wo), indexing="ij")
    y = op.stride[0] * i + u - op.padding[0]
    x = op.stride[1] * j + v - op.padding[1]
    ok = (y >= 0) & (y < H) & (x >= 0) & (x < W)
    rows = ((c * Ho + i) * Wo + j)[ok]
    cols = ((c * H + y) * W + x)[ok]
    return SynapseMatrix.build(rows, cols, 1, (C * Ho * Wo, C * H * W))
