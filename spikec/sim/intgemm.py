"""Exact int8 x int8 -> int32 matrix products: an optional accelerator of the simulator.

A synapse multiplies spikes (0/1) or small counts by 8-bit weight mantissas. Both fit in int8, and
where a static bound proves that no partial sum leaves int32 the product is exact in an
int8 x int8 -> int32 GEMM (``torch._int_mm``; 4-5 times the throughput of an fp32 GEMM on the
CPUs of ``docs/simulator.md``). torch is imported lazily, only when a simulator first asks for
the accelerator: without torch (the Lava environment) ``available()`` is False and the simulator
keeps its float/int64 carriers, with identical results.

The accelerator is checked before its first use (``_probe``): products of extreme operands
(``-128``, ``127``, long sums) in several shapes must equal numpy's int64 products, else it is
not used. (Some int8 kernels saturate 16-bit intermediate sums on CPUs without VNNI; the probe
rejects such a library on such a CPU.) ``SPIKEC_SIM_INT8=0`` turns it off.
"""
from __future__ import annotations

import os

import numpy as np
from numpy.lib.stride_tricks import as_strided

INT8_MAX = 127
#: Products of fewer multiply-accumulates run on one thread (about 2 ms at the ~300 G int8
#: MAC/s of one core): waking torch's OpenMP team costs more than it saves, and much more when
#: other processes share the cores (a descheduled worker stalls the barrier: measured 17 G MAC/s
#: for 0.4 G-MAC products on two threads at load 12, against 185-300 G MAC/s on one).
PARALLEL_MACS = 1 << 29
#: Every partial sum of an accelerated product stays below this magnitude (int32 accumulators).
INT32_EXACT = (1 << 31) - 1

_torch = None          # None: not probed yet; False: unavailable; else the torch module


def available() -> bool:
    """Whether exact int8 GEMMs can run here (torch importable and the probe passed)."""
    global _torch
    if _torch is None:
        _torch = _probe()
    return _torch is not False


def _probe():
    """torch, if its int8 GEMM is exact on extreme operands in every shape tried; else False."""
    if os.environ.get("SPIKEC_SIM_INT8", "1") == "0":
        return False
    try:
        import torch
        mm = torch._int_mm
    except (ImportError, AttributeError):
        return False
    rng = np.random.default_rng(0)
    weights = np.array([-128, 127, -127, 126, 1, 0], dtype=np.int8)
    inputs = np.array([127, -128, 127, 1, 0], dtype=np.int8)
    try:
        for m, k, n in [(1, 1, 1), (4, 1, 4), (5, 7, 3), (17, 4608, 33), (64, 576, 200),
                        (2, 65536, 2)]:
            a = rng.choice(weights, (m, k))
            b = rng.choice(inputs, (k, n))
            a[0], b[:, 0] = -128, 127                      # the largest sums, both signs
            a[-1], b[:, -1] = 127, -128 if n > 1 else 127
            want = a.astype(np.int64) @ b.astype(np.int64)
            for bt in (b, np.ascontiguousarray(b.T).T):      # row- and column-major
                got = mm(torch.from_numpy(_canonical(a)), torch.from_numpy(_canonical(bt)))
                if not np.array_equal(got.numpy(), want):
                    return False
    except RuntimeError:
        return False
    return torch


def int8_weights(w: np.ndarray) -> tuple[np.ndarray, int] | None:
    """``(w8, g)`` with ``w == w8 << g`` and ``w8`` int8, ``g`` as large as possible; None when no
    such ``w8`` fits int8. Loihi 2's mixed-sign mantissas are even numbers in ``[-256, 254]``:
    ``g = 1`` and the halves fit."""
    w = np.asarray(w, dtype=np.int64)
    nz = w[w != 0]
    g = int(np.log2(np.min(nz & -nz))) if nz.size else 0
    w8 = w >> g
    if w8.size and (w8.min() < -INT8_MAX - 1 or w8.max() > INT8_MAX):
        return None
    return w8.astype(np.int8), g


def as_int8(x: np.ndarray) -> np.ndarray:
    """Integers of magnitude <= 127 (bool spikes included: a view, no copy) as int8."""
    if x.dtype == np.int8:
        return x
    if x.dtype == bool:
        return x.view(np.int8)
    return x.astype(np.int8)


def matmul(a: np.ndarray, b: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """``a [m, k] @ b [k, n]`` of int8 matrices as int32 [m, n] (into ``out`` when given).

    The caller guarantees that every partial sum stays below ``INT32_EXACT`` in magnitude.
    """
    torch = _torch
    ta, tb = torch.from_numpy(_canonical(a)), torch.from_numpy(_canonical(b))
    if out is not None and not out.flags.c_contiguous:
        raise ValueError("matmul: out must be C-contiguous")
    threads = torch.get_num_threads()
    single = threads > 1 and a.shape[0] * a.shape[1] * b.shape[1] < PARALLEL_MACS
    if single:
        torch.set_num_threads(1)
    try:
        if out is None:
            return torch._int_mm(ta, tb).numpy()
        torch._int_mm(ta, tb, out=torch.from_numpy(_canonical(out)))
        return out
    finally:
        if single:
            torch.set_num_threads(threads)


def stacked_matmul(a: np.ndarray, b: np.ndarray, keep: bool = False) -> np.ndarray:
    """``a [m, k] @ b [S, k, n]`` -> int32 [S, m, n] as one GEMM over the stack (``b`` moved to
    ``[k, S n]``, the result back to ``[S, m, n]``; ``keep``: the GEMM's own ``[m, S, n]``)."""
    s, k, n = b.shape
    cols = np.empty((k, s, n), dtype=np.int8)
    cols[...] = b.transpose(1, 0, 2)
    y = matmul(a, cols.reshape(k, s * n)).reshape(-1, s, n)
    return y if keep else np.ascontiguousarray(y.transpose(1, 0, 2))


def shift(acc: np.ndarray, s: np.ndarray, axis: int) -> np.ndarray:
    """``floor(acc * 2**s)`` in place for int32 ``acc``, ``s`` [acc.shape[axis]] per channel (an
    arithmetic shift, left or right). The caller guarantees the result fits."""
    s = np.asarray(s, dtype=np.int64)
    if s.size and (s == s[0]).all():
        e = int(s[0])
        if e > 0:
            np.left_shift(acc, e, out=acc)
        elif e < 0:
            np.right_shift(acc, -e, out=acc)
        return acc
    shape = [1] * acc.ndim
    shape[axis] = -1
    left, right = np.maximum(s, 0), np.maximum(-s, 0)
    if left.any():
        np.left_shift(acc, left.astype(np.int32).reshape(shape), out=acc)
    if right.any():
        np.right_shift(acc, right.astype(np.int32).reshape(shape), out=acc)
    return acc


def _canonical(x: np.ndarray) -> np.ndarray:
    """A writeable row- or column-major matrix with the strides of its layout.

    numpy calls a matrix with a dimension of size 1 contiguous whatever that dimension's stride
    (``w.T`` of a ``[n, 1]`` ``w`` has strides ``(1, 1)``); torch passes such strides to the int8
    GEMM, which then reads the wrong memory. Contiguous matrices get the canonical strides (a
    view), others are copied.
    """
    m, n = x.shape
    size = x.itemsize
    if x.strides == (n * size, size) and x.flags.writeable:
        return x                    # already canonical row-major (the common case): no view
    if not x.flags.writeable:
        return np.ascontiguousarray(x).copy()
    if x.flags.c_contiguous:
        return as_strided(x, strides=(n * size, size))
    if x.flags.f_contiguous:
        return as_strided(x, strides=(size, m * size))
    return np.ascontiguousarray(x)
