"""A small integer sparse matrix (coordinate form) for building synapses without scipy.

spikec's core depends on numpy only; the plan builder uses this class for every synaptic weight
matrix and writes it in CSR form (``data``, ``indices``, ``indptr``), which the Lava runtime turns
into a ``scipy.sparse.csr_matrix`` (scipy comes with lava-nc).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


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
