"""Exact integer linear algebra through BLAS.

Every value the simulator holds is an array of integers. Where a bound on the magnitudes is known,
the integers travel in a floating-point *carrier* so that matrix products run through BLAS:

* ``float32`` holds every integer of magnitude ``<= 2**24`` exactly,
* ``float64`` every integer of magnitude ``<= 2**53``,
* ``int64`` everything else (numpy's integer matmul: exact, slow).

A product ``sum_k W[o, k] x[k]`` of integers is computed exactly in a float carrier when
``max_o sum_k |W[o, k]| * max|x| <= 2**24`` (resp. ``2**53``): every partial sum, in whatever order
BLAS adds, is an integer bounded by that sum, hence representable, so no rounding ever happens
(fused multiply-adds included). ``carrier(bound)`` picks the narrowest carrier for a bound; the
callers compute the bound of each layer from its weights and the bound of its input.
"""
from __future__ import annotations

import contextlib

import numpy as np

from spikec.sim import intgemm as ig
from spikec.sim import jit

#: Largest magnitude up to which every integer is exact in each float carrier.
EXACT_FLOAT32 = 1 << 24
EXACT_FLOAT64 = 1 << 53

#: Memory budget of one im2col block (bytes); larger inputs are processed in sample chunks. Sized
#: for the cache: 64 MiB blocks made a batch of 32 samples of the shipped V2 1.5x slower per sample
#: than a batch of 8; with 4 MiB both cost the same.
IM2COL_BYTES = 4 << 20


#: Output maps with fewer positions than this run as one GEMM over all samples of a chunk
#: (``W @ cols[C kh kw, N Ho Wo]``, then a transpose to NCHW) instead of one thin GEMM per sample:
#: measured 1.4-1.6x faster on 7x7 and 14x14 maps, no better on 28x28 and larger.
SMALL_MAP = 256

#: The im2col block of the small-map stride-1 convolutions (``_conv_shifted_rows``). The shipped
#: V2's largest, 64 channels of 14x14 at batch 16 (T = 4), is 8.3 MB: in one block its sums are
#: one GEMM output, which the next LIF reads as it lands (``spikec.sim.grid``).
SHIFTED_ROWS_BYTES = 16 << 20

#: A stack of products smaller than this (multiply-accumulates per product) runs on one BLAS
#: thread: waking the thread pool for every small product costs more than it saves, and far more
#: when the cores are shared with other processes (seconds instead of milliseconds per stack).
SMALL_GEMM_MACS = 1 << 26

_blas_libs = None
_blas_limit: int | None = None      # the thread count ``blas_threads`` holds the BLAS at now


@contextlib.contextmanager
def blas_threads(n: int):
    """Context limiting the BLAS to ``n`` threads (a no-op without ``threadpoolctl``). The BLAS
    libraries are looked up once: ``ThreadpoolController.limit`` inspects every loaded library
    on each call (about half a millisecond, as long as a small product itself)."""
    global _blas_libs, _blas_limit
    if _blas_libs is None:
        try:
            from threadpoolctl import ThreadpoolController
            _blas_libs = ThreadpoolController().select(user_api="blas").lib_controllers
        except Exception:          # threadpoolctl is optional
            _blas_libs = []
    if _blas_limit == n:            # already held there (an enclosing context): nothing to do
        yield
        return
    saved = [lib.num_threads for lib in _blas_libs]
    saved_limit, _blas_limit = _blas_limit, n
    for lib in _blas_libs:
        lib.set_num_threads(n)
    try:
        yield
    finally:
        for lib, k in zip(_blas_libs, saved):
            lib.set_num_threads(k)
        _blas_limit = saved_limit


def matmul(a: np.ndarray, b: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """``np.matmul``; a stack of small products runs on one BLAS thread (``SMALL_GEMM_MACS``)."""
    m, k, n = (a.shape[-2] if a.ndim > 1 else 1), a.shape[-1], b.shape[-1]
    if m * k * n < SMALL_GEMM_MACS and max(a.ndim, b.ndim) > 2:
        with blas_threads(1):
            return np.matmul(a, b, out=out)
    return np.matmul(a, b, out=out)


def carrier(bound: int) -> np.dtype:
    """Narrowest dtype that holds every integer of magnitude ``<= bound`` exactly (and every
    partial sum of a product whose absolute sum is ``<= bound``)."""
    if bound <= EXACT_FLOAT32:
        return np.dtype(np.float32)
    if bound <= EXACT_FLOAT64:
        return np.dtype(np.float64)
    return np.dtype(np.int64)


def wider(a: np.dtype, b: np.dtype) -> np.dtype:
    """The wider of two carriers (float32 < float64 < int64)."""
    order = [np.dtype(np.float32), np.dtype(np.float64), np.dtype(np.int64)]
    return order[max(order.index(np.dtype(a)), order.index(np.dtype(b)))]


def as_carrier(x: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """``x`` converted to ``dtype`` (no copy when it already is). Float -> int64 conversion is exact
    because every carried value is an integer."""
    return x if x.dtype == dtype else x.astype(dtype)


def to_int64(x: np.ndarray) -> np.ndarray:
    """The carried integers as int64 (exact)."""
    return x if x.dtype == np.int64 else x.astype(np.int64)


def abs_row_sums(weight2d: np.ndarray) -> np.ndarray:
    """``sum_k |W[o, k]|`` per output row as Python-int-safe int64 [out]."""
    return np.abs(weight2d.astype(np.int64)).sum(axis=1)


def dense_matmul(x: np.ndarray, weight: np.ndarray, axis: int, grid: bool = False):
    """``y[..., o, ...] = sum_i W[o, i] x[..., i, ...]`` along per-sample ``axis`` of ``x`` [N, *shape].

    ``weight`` [out, in] already in ``x``'s carrier dtype. Contracts without copying ``x`` when the
    feature axis is the last one (``x @ W.T``) or the one before it (``W @ x``: the ``(C, N)`` token
    layout of kernel-1 Conv1d attention). An int8 ``weight`` runs on the int8 GEMM (``x`` int8
    or bool, int32 result; the caller guarantees exactness as for ``conv2d``). One input feature
    (``weight [out, 1]``, an attention gain): an element-wise outer product, no GEMM.

    ``grid`` (int8 ``weight``): where the product is one GEMM over the token layout, return it as
    it lands, ``(y [out, N*n], (1, n), (1, n))`` (``spikec.sim.grid``) instead of ``[N, out,
    n]``; elsewhere the usual array.
    """
    a = axis % (x.ndim - 1) + 1
    if weight.shape[1] == 1:   # one input feature: an outer product, element-wise
        odt = weight.dtype
        if odt == np.int8:
            x, odt = ig.as_int8(x), np.dtype(np.int32)
        shape = [1] * x.ndim
        shape[a] = weight.shape[0]
        return np.multiply(x, weight[:, 0].reshape(shape), dtype=odt)
    if a == x.ndim - 1:        # one GEMM over every sample and token
        x = np.ascontiguousarray(x)
        y = _gemm(x.reshape(-1, x.shape[-1]), weight.T)
        return y.reshape(x.shape[:-1] + weight.shape[:1])
    if a == x.ndim - 2:
        if grid and weight.dtype == np.int8 and x.ndim == 3:
            y = ig.stacked_matmul(weight, ig.as_int8(x), keep=True)
            return y.reshape(y.shape[0], -1), (1, x.shape[2]), (1, x.shape[2])
        return _product(weight, x)
    xm = np.moveaxis(x, a, -2)
    return np.ascontiguousarray(np.moveaxis(_product(weight, xm), -2, a))


def _product(weight: np.ndarray, x: np.ndarray) -> np.ndarray:
    """``weight [o, k] @ x [..., k, n]`` -> [..., o, n]."""
    if weight.dtype != np.int8:
        return matmul(weight, x)
    lead = x.shape[:-2]
    y = ig.stacked_matmul(weight, ig.as_int8(x).reshape((-1,) + x.shape[-2:]))
    return y.reshape(lead + y.shape[1:])


def conv2d(x: np.ndarray, weight: np.ndarray, stride, padding, dilation, groups: int,
           shift: np.ndarray | None = None, grid: bool = False):
    """Cross-correlation like ``torch.nn.functional.conv2d`` (zero padding), exact in the carrier
    ``weight.dtype``, then (int8 ``weight`` only) ``floor(y * 2**shift[o])`` per output channel
    where ``shift`` [O] is given (``intgemm.shift``; the caller guarantees that it fits int32).

    ``x`` [N, C, H, W] integers in any dtype (bool spikes included: converted while copied),
    ``weight`` [O, C/groups, kh, kw]; returns [N, O, Ho, Wo] in ``weight.dtype``. An int8
    ``weight`` (with ``|x| <= 127`` and every partial sum inside int32, which the caller
    guarantees) runs on the int8 GEMM of ``spikec.sim.intgemm`` and returns int32.
    Per sample one GEMM ``W[O, C kh kw] @ cols[C kh kw, Ho Wo]`` (im2col built by kh*kw strided
    copies, in chunks of samples), so the output lands in NCHW without a transpose; on small maps
    (``Ho Wo < SMALL_MAP``) one GEMM per chunk of samples and a transpose. 1x1 kernels and
    non-overlapping patch kernels (kernel == stride, no padding) skip the window copies. Where
    numba is installed (``spikec.sim.jit``) the int8 small-map convolutions build their im2col
    rows and do their transpose back to NCHW (with ``shift``) in compiled loops.

    ``grid`` (int8 ``weight``, one group, no ``shift``): where the small-map paths compute one GEMM,
    return its output as it lands, ``(y [O, N Hs R], (Hs, R), (Ho, Wo))`` (``spikec.sim.grid``),
    without the pass back to NCHW; elsewhere the usual (unshifted) array.
    """
    n, c, h, w = x.shape
    o, cg, kh, kw = weight.shape
    (sh, sw), (ph, pw), (dh, dw) = stride, padding, dilation
    ho = (h + 2 * ph - dh * (kh - 1) - 1) // sh + 1
    wo = (w + 2 * pw - dw * (kw - 1) - 1) // sw + 1
    if groups != 1:
        og = o // groups
        return np.concatenate(
            [conv2d(np.ascontiguousarray(x[:, g * cg:(g + 1) * cg]), weight[g * og:(g + 1) * og],
                    stride, padding, dilation, 1,
                    None if shift is None else _per_channel(shift, o)[g * og:(g + 1) * og])
             for g in range(groups)], axis=1)
    if (shift is not None or grid) and weight.dtype != np.int8:
        raise ValueError("conv2d: a shift or a grid output needs int8 weights")
    if grid and (groups != 1 or shift is not None):
        raise ValueError("conv2d: a grid output is for one group, unshifted")
    return _conv2d(x, weight, (sh, sw), (ph, pw), (dh, dw), (ho, wo), shift, grid)


def _conv2d(x, weight, stride, padding, dilation, out_hw, shift, grid=False):
    """``conv2d`` of one group (``shift`` None or [O]; ``grid``: see ``conv2d``)."""
    n, c, h, w = x.shape
    o, cg, kh, kw = weight.shape
    (sh, sw), (ph, pw), (dh, dw), (ho, wo) = stride, padding, dilation, out_hw
    dt = weight.dtype
    odt = np.dtype(np.int32) if dt == np.int8 else dt
    if dt == np.int8:
        x = ig.as_int8(x)               # bool spikes: a view; every copy below moves bytes
    w2d = weight.reshape(o, cg * kh * kw)
    if kh == kw == 1 and (sh, sw) == (1, 1) and (ph, pw) == (0, 0):
        if h * w < SMALL_MAP:
            cols = np.empty((c, n, h * w), dtype=dt)
            cols[...] = x.reshape(n, c, h * w).transpose(1, 0, 2)
            y = _gemm(w2d, cols.reshape(c, n * h * w))
            return (y, (ho, wo), (ho, wo)) if grid else _to_nchw(y, (ho, wo), (ho, wo), shift)
        xc = ig.as_int8(x) if dt == np.int8 else as_carrier(x, dt)
        return _shifted(_gemm_stack(w2d, xc.reshape(n, c, h * w), odt).reshape(n, o, ho, wo),
                        shift)
    if (kh, kw) == (sh, sw) and (ph, pw) == (0, 0) and (dh, dw) == (1, 1):
        # patchify: space-to-depth, one copy of the input, then a 1x1 product
        xs = x[:, :, :ho * kh, :wo * kw].reshape(n, c, ho, kh, wo, kw)
        if ho * wo < SMALL_MAP:     # one GEMM over every sample: cols [C kh kw, N Ho Wo]
            cols = np.empty((c, kh, kw, n, ho, wo), dtype=dt)
            cols[...] = xs.transpose(1, 3, 5, 0, 2, 4)
            y = _gemm(w2d, cols.reshape(c * kh * kw, n * ho * wo))
            return (y, (ho, wo), (ho, wo)) if grid else _to_nchw(y, (ho, wo), (ho, wo), shift)
        cols = np.empty((n, c, kh, kw, ho, wo), dtype=dt)
        cols[...] = xs.transpose(0, 1, 3, 5, 2, 4)
        y = _gemm_stack(w2d, cols.reshape(n, c * kh * kw, ho * wo), odt)
        return _shifted(y.reshape(n, o, ho, wo), shift)
    if (sh, sw) == (1, 1) and ho * wo < SMALL_MAP:
        return _conv_shifted_rows(x, w2d, (kh, kw), (ph, pw), (dh, dw), shift, grid)
    xp = np.pad(x, [(0, 0), (0, 0), (ph, ph), (pw, pw)]) if ph or pw else x
    out = np.empty((n, o, ho * wo), dtype=odt)
    per_sample = c * kh * kw * ho * wo * dt.itemsize
    chunk = max(1, IM2COL_BYTES // max(per_sample, 1))
    small = ho * wo < SMALL_MAP
    buf = np.empty(min(chunk, n) * c * kh * kw * ho * wo, dtype=dt)  # reused: no page faults
    for s in range(0, n, chunk):
        m = min(chunk, n - s)
        # small maps: cols [C, kh, kw, m, Ho, Wo], one GEMM for the chunk; else [m, C, kh, kw,
        # Ho, Wo], one GEMM per sample (each filled in its own memory order: faster)
        cols = buf[:m * c * kh * kw * ho * wo].reshape(
            (c, kh, kw, m, ho, wo) if small else (m, c, kh, kw, ho, wo))
        src = xp[s:s + m].transpose(1, 0, 2, 3) if small else xp[s:s + m]
        lead = (slice(None),) * (1 if small else 2)
        for u in range(kh):
            for v in range(kw):
                cols[lead + (u, v)] = src[:, :, u * dh:u * dh + sh * (ho - 1) + 1:sh,
                                          v * dw:v * dw + sw * (wo - 1) + 1:sw]
        if small:
            _to_nchw(_gemm(w2d, cols.reshape(c * kh * kw, m * ho * wo)), (ho, wo), (ho, wo),
                     None, out=out[s:s + m].reshape(m, o, ho, wo))
        else:
            _gemm_stack(w2d, cols.reshape(m, c * kh * kw, ho * wo), odt, out=out[s:s + m])
    return _shifted(out.reshape(n, o, ho, wo), shift)


def _shifted(y: np.ndarray, shift: np.ndarray | None) -> np.ndarray:
    """``y`` [N, O, ...] shifted by ``shift`` [O] in place (``intgemm.shift``), or as is."""
    return y if shift is None else ig.shift(y, shift, 1)


def _gemm(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``a @ b`` of 2-d matrices: int8 ones on the int8 GEMM (int32 result), others by BLAS."""
    if a.dtype == np.int8 or b.dtype == np.int8:
        return ig.matmul(ig.as_int8(a), ig.as_int8(b))
    return a @ b


def _gemm_stack(a: np.ndarray, b: np.ndarray, odt, out: np.ndarray | None = None) -> np.ndarray:
    """``a [m, k] @ b [S, k, n]`` -> [S, m, n] (into ``out`` when given)."""
    if a.dtype != np.int8:
        return matmul(a, b, out=out)
    if out is None:
        out = np.empty((b.shape[0], a.shape[0], b.shape[2]), dtype=odt)
    for i in range(b.shape[0]):
        ig.matmul(a, b[i], out=out[i])
    return out


def maxpool2d(x: np.ndarray, kernel, stride, padding) -> np.ndarray:
    """Max pooling of x [N, C, H, W] with padding by the dtype's lowest value (the ``-inf`` of the
    float IR): one ``np.maximum`` per kernel offset over the output, no window copies."""
    (kh, kw), (sh, sw), (ph, pw) = kernel, stride, padding
    n, c, h, w = x.shape
    ho = (h + 2 * ph - kh) // sh + 1
    wo = (w + 2 * pw - kw) // sw + 1
    low = False if x.dtype == bool else np.iinfo(x.dtype).min if x.dtype.kind in "iu" else -np.inf
    xp = np.pad(x, [(0, 0), (0, 0), (ph, ph), (pw, pw)], constant_values=low) if ph or pw else x
    out = None
    for u in range(kh):
        for v in range(kw):
            win = xp[:, :, u:u + sh * (ho - 1) + 1:sh, v:v + sw * (wo - 1) + 1:sw]
            out = win.copy() if out is None else np.maximum(out, win, out=out)
    return out


def _conv_shifted_rows(x: np.ndarray, w2d: np.ndarray, kernel, padding, dilation,
                       shift: np.ndarray | None, grid: bool = False):
    """Stride-1 convolution of ``x`` [N, C, H, W] on a small map: one GEMM per chunk of samples
    over every position of the *padded* map, whose im2col rows are contiguous.

    With the padded samples laid end to end per channel (``flat [C, m Hs R]``: ``R`` positions per
    row, ``Hs`` rows per sample), the input of tap ``(u, v)`` at position ``p`` is ``flat[c, p +
    u dh R + v dw]``: each im2col row is one contiguous slice (a memcpy, where the window copies
    of ``conv2d`` move ``Wo`` elements at a time). Neighbours share their padding: a row holds
    its ``pw`` left zeros and its ``W`` values (``R = W + pw``), so a window that reaches past
    the right edge reads the next row's left zeros, and a sample holds its ``ph`` top zero rows
    and its ``H`` rows (``Hs = H + ph``), so a window below the bottom edge reads the next
    sample's top zeros (or the zero tail). That needs ``pw <= dw (kw - 1)`` and ``ph <= dh (kh -
    1)`` (``same`` padding); otherwise each side gets its own zeros (``R = W + 2 pw``, ``Hs = H
    + 2 ph``). The GEMM also computes the positions past ``Ho`` rows and ``Wo`` columns of each
    sample, whose windows wrap into the next row or sample; they are dropped. Their sums mix the
    same weights with the same inputs (or zeros), so the caller's bound on every partial sum
    holds for them too.

    Where compiled loops run (``spikec.sim.jit``, int8 ``w2d``), ``cols`` is built straight from
    ``x``, one channel at a time through one padded row in cache (``_im2col_rows_loop``: no
    ``flat``), and the crop, transpose and ``shift`` of the GEMM output are one pass
    (``_to_nchw``). ``grid``: in one chunk, the GEMM's output as it lands (``conv2d``).
    """
    n, c, h, w = x.shape
    o = w2d.shape[0]
    (kh, kw), (ph, pw), (dh, dw) = kernel, padding, dilation
    ho, wo = h + 2 * ph - dh * (kh - 1), w + 2 * pw - dw * (kw - 1)
    shared = pw <= dw * (kw - 1) and ph <= dh * (kh - 1)
    hs, r = (h + ph, w + pw) if shared else (h + 2 * ph, w + 2 * pw)
    dt = w2d.dtype
    tail = dh * (kh - 1) * r + dw * (kw - 1)
    chunk = max(1, SHIFTED_ROWS_BYTES // max(c * kh * kw * hs * r * dt.itemsize, 1))
    one = grid and chunk >= n
    out = None if one else np.empty((n, o, ho, wo), dtype=np.int32 if dt == np.int8 else dt)
    fill = (jit.kernel(_im2col_rows_loop) if dt == np.int8 else None) or _im2col_rows
    for s in range(0, n, chunk):
        m = min(chunk, n - s)
        span = m * hs * r
        cols = np.empty((c, kh, kw, span), dtype=dt)
        fill(x[s:s + m], ph, pw, dh, dw, hs, r, cols, np.zeros(span + tail, dtype=dt))
        y = _gemm(w2d, cols.reshape(c * kh * kw, span))
        if one:
            return y, (hs, r), (ho, wo)
        _to_nchw(y, (hs, r), (ho, wo), shift, out=out[s:s + m])
    return out


def _im2col_rows(x, ph, pw, dh, dw, hs, r, cols, row):
    """``_im2col_rows_loop`` by numpy copies (``row``: its length only): the padded map ``flat [C,
    len(row)]`` is filled from ``x``, then each tap's row of ``cols`` is one slice of it."""
    m, c, h, w = x.shape
    kh, kw, span = cols.shape[1:]
    flat = np.zeros((c, len(row)), dtype=cols.dtype)
    flat[:, :span].reshape(c, m, hs, r)[:, :, ph:ph + h, pw:pw + w] = x.transpose(1, 0, 2, 3)
    for u in range(kh):
        for v in range(kw):
            off = u * dh * r + v * dw
            cols[:, u, v] = flat[:, off:off + span]


def _to_nchw(y: np.ndarray, grid, out_hw, shift: np.ndarray | None,
             out: np.ndarray | None = None) -> np.ndarray:
    """GEMM output ``y`` [O, m Hs R] over ``grid = (Hs, R)`` positions per sample as [m, O, Ho,
    Wo] (each sample's first ``Ho`` rows and ``Wo`` columns; into ``out`` when given), shifted
    by ``shift`` [O] where given. One compiled pass (``_nchw_loop``) for int32 ``y`` where
    compiled loops run, else a numpy copy and ``intgemm.shift``."""
    o = y.shape[0]
    (hs, r), (ho, wo) = grid, out_hw
    if out is None:
        out = np.empty((y.shape[1] // (hs * r), o, ho, wo), dtype=y.dtype)
    loop = jit.kernel(_nchw_loop) if y.dtype == np.int32 else None
    if loop is None:
        out[...] = y.reshape(o, -1, hs, r)[:, :, :ho, :wo].transpose(1, 0, 2, 3)
        return _shifted(out, shift)
    s = np.zeros(o, dtype=np.int32) if shift is None else _per_channel(shift, o)
    loop(y, hs, r, np.maximum(s, 0), np.maximum(-s, 0), out)
    return out


def _per_channel(shift: np.ndarray, o: int) -> np.ndarray:
    """``shift`` (one value or [O]) as int32 [O]."""
    return np.broadcast_to(np.asarray(shift, dtype=np.int32), (o,))


def _nchw_loop(y, hs, r, left, right, out):
    """``out[b, o, i, j] = floor(y[o, (b Hs + i) R + j] * 2**(left[o] - right[o]))`` (one of
    ``left``, ``right`` zero): ``_to_nchw``'s loop (numba; plain Python computes the same). Runs
    of ``Wo`` elements, or of a whole ``Ho Wo`` map where there is nothing to crop; slices, not
    index sums, so that numba vectorizes the runs."""
    m, n_out, ho, wo = out.shape
    rows, run = (1, ho * wo) if hs == ho and r == wo else (ho, wo)
    planes = out.reshape(m, n_out, rows, run)
    for o in range(n_out):
        lo, ro = left[o], right[o]
        yo = y[o]
        for b in range(m):
            for i in range(rows):
                src = (b * hs + i) * r
                ys = yo[src:src + run]
                dst = planes[b, o, i]
                for j in range(run):
                    dst[j] = (ys[j] << lo) >> ro


def _im2col_rows_loop(x, ph, pw, dh, dw, hs, r, cols, row):
    """``cols[c, u, v, p] = flat[c, p + u dh R + v dw]`` of ``_conv_shifted_rows`` for ``x`` [m,
    C, H, W], built through ``row`` (zeros, as long as one channel of ``flat``): per channel its
    values are written where ``flat`` holds them (the padding stays zero), then each tap's row
    is one slice of it. ``_conv_shifted_rows``'s loop (numba; plain Python computes the same);
    slices, not index sums, so that numba vectorizes the copies."""
    m, n_in, h, w = x.shape
    kh, kw, span = cols.shape[1], cols.shape[2], cols.shape[3]
    for c in range(n_in):
        for b in range(m):
            for i in range(h):
                base = (b * hs + ph + i) * r + pw
                dst, src = row[base:base + w], x[b, c, i]
                for j in range(w):
                    dst[j] = src[j]
        for u in range(kh):
            for v in range(kw):
                off = u * dh * r + v * dw
                dst, src = cols[c, u, v], row[off:off + span]
                for p in range(span):
                    dst[p] = src[p]
