"""The compiled loops of the convolutions (``spikec.sim.jit``, ``spikec.sim.linalg``) are exact.

Every test runs three ways: the loops compiled by numba, the same loops as plain Python (what the
compiled ones compute, checked where numba is absent too) and the numpy code they replace
(``SPIKEC_SIM_NUMBA=0``). Each is compared with a brute-force int64 convolution and with the
simulator's int64 reference path, with mixed-sign per-channel exponents (left and right shifts,
floor semantics on negative sums).
"""
from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")      # the int8 GEMM these convolutions run on

from spikec.ir import ConvSynapse, GradedInput, Graph, Output  # noqa: E402
from spikec.sim import Simulator, jit  # noqa: E402
from spikec.sim import intgemm as ig  # noqa: E402
from spikec.sim import linalg as la  # noqa: E402

I64 = np.int64


@pytest.fixture(params=["numba", "python-loop", "numpy"])
def loops(request, monkeypatch):
    """The way the conv loops run; returns the names of the loops used (plain Python only)."""
    used: list[str] = []
    assert ig.available()
    monkeypatch.setattr(jit, "_numba", None)        # looked up again, restored afterwards
    if request.param == "numba":
        pytest.importorskip("numba")
        monkeypatch.setenv("SPIKEC_SIM_NUMBA", "1")
        assert jit.kernel(la._nchw_loop) is not None
    elif request.param == "python-loop":
        def plain(loop):
            used.append(loop.__name__)
            return loop
        monkeypatch.setattr(jit, "kernel", plain)
    else:
        monkeypatch.setenv("SPIKEC_SIM_NUMBA", "0")
        assert jit.kernel(la._nchw_loop) is None
    return request.param, used


def test_numba_switch(monkeypatch):
    monkeypatch.setattr(jit, "_numba", None)
    monkeypatch.setenv("SPIKEC_SIM_NUMBA", "0")
    assert not jit.enabled() and jit.kernel(la._nchw_loop) is None


def _conv_int64(x, w, padding, dilation):
    """Brute-force stride-1 cross-correlation in int64: one product per tap."""
    (ph, pw), (dh, dw) = padding, dilation
    o, c, kh, kw = w.shape
    xp = np.pad(x.astype(I64), [(0, 0), (0, 0), (ph, ph), (pw, pw)])
    ho, wo = xp.shape[2] - dh * (kh - 1), xp.shape[3] - dw * (kw - 1)
    out = np.zeros((x.shape[0], o, ho, wo), dtype=I64)
    for u in range(kh):
        for v in range(kw):
            win = xp[:, :, u * dh:u * dh + ho, v * dw:v * dw + wo]
            out += np.einsum("oc,nchw->nohw", w[:, :, u, v].astype(I64), win)
    return out


def _shifted_int64(acc, shift):
    s = np.asarray(shift, dtype=I64).reshape(1, -1, 1, 1)
    return np.where(s >= 0, acc << np.maximum(s, 0), acc >> np.maximum(-s, 0))


CONVS = [
    # (input [N, C, H, W], kernel, padding, dilation): stride 1, small maps
    ((5, 3, 6, 7), (3, 3), (1, 1), (1, 1)),     # same padding: rows share their zeros
    ((4, 2, 5, 5), (3, 3), (2, 2), (1, 1)),     # wider padding: each side its own zeros
    ((3, 4, 9, 8), (3, 3), (2, 2), (2, 2)),     # dilated
    ((4, 3, 6, 5), (1, 3), (0, 1), (1, 1)),     # non-square kernel
    ((2, 2, 8, 8), (5, 5), (2, 2), (1, 1)),
    ((6, 5, 7, 7), (1, 1), (0, 0), (1, 1)),     # 1x1 on a small map: the output pass only
]


@pytest.mark.parametrize("case", CONVS)
@pytest.mark.parametrize("spikes", [True, False])
def test_conv2d_with_shift_matches_int64(case, spikes, loops, monkeypatch):
    """``conv2d(..., shift)`` = floor(conv * 2**shift) per channel, in several sample chunks
    (a small ``IM2COL_BYTES``), with extreme weights and counts."""
    mode, used = loops
    shape, kernel, padding, dilation = case
    rng = np.random.default_rng(len(CONVS) * spikes + CONVS.index(case))
    x = rng.random(shape) < 0.4 if spikes else rng.integers(-127, 128, shape).astype(np.int8)
    w = rng.integers(-128, 128, (6, shape[1]) + kernel).astype(np.int8)
    w[0] = -128
    shift = np.array([-3, 2, 0, -1, 3, -7])
    monkeypatch.setattr(la, "IM2COL_BYTES", 600)
    got = la.conv2d(x, w, (1, 1), padding, dilation, 1, shift)
    assert got.dtype == np.int32
    want = _shifted_int64(_conv_int64(x, w, padding, dilation), shift)
    assert np.array_equal(got, want)
    unshifted = la.conv2d(x, w, (1, 1), padding, dilation, 1)
    assert np.array_equal(unshifted, _conv_int64(x, w, padding, dilation))
    if mode == "python-loop":
        assert "_nchw_loop" in used
        assert ("_im2col_rows_loop" in used) == (kernel != (1, 1))


def test_output_pass_at_the_int32_limits(loops):
    """``_to_nchw`` on sums at the int32 limits: right shifts floor (``-2**31 >> 7``, odd negative
    sums), left shifts land exactly on the largest values that fit."""
    rng = np.random.default_rng(5)
    o, m, (hs, r), (ho, wo) = 4, 3, (5, 6), (4, 4)
    shift = np.array([-7, 0, 3, -1])
    y = rng.integers(-2**31, 2**31, (o, m * hs * r), dtype=I64)
    y[0, :4] = [-2**31, 2**31 - 1, -1, -129]
    y[2] = rng.integers(-2**28, 2**28, m * hs * r)
    y[2, :2] = [-2**28, 2**28 - 1]
    got = la._to_nchw(y.astype(np.int32), (hs, r), (ho, wo), shift)
    want = _shifted_int64(y.reshape(o, m, hs, r)[:, :, :ho, :wo].transpose(1, 0, 2, 3), shift)
    assert np.array_equal(got, want)
    assert np.array_equal(la._to_nchw(y.astype(np.int32), (hs, r), (ho, wo), None),
                          y.reshape(o, m, hs, r)[:, :, :ho, :wo].transpose(1, 0, 2, 3))


def _one_conv(w, e, shape, stride, pad, groups, bits):
    op = ConvSynapse("s", ("x",), weight=w, weight_exp=e, stride=(stride, stride),
                     padding=(pad, pad), groups=groups)
    return Graph([GradedInput("x", (), shape=shape, encoding="sequence",
                              kind="spike" if bits == 1 else "count", payload_bits=bits),
                  op, Output("y", ("s",))], timesteps=2, domain="fixed")


@pytest.mark.parametrize("case", [
    # (input shape, weight shape, stride, padding, groups, payload bits)
    ((4, 9, 9), (6, 4, 3, 3), 1, 1, 1, 1),       # the shifted-rows conv: both loops
    ((8, 6, 6), (4, 8, 2, 2), 2, 0, 1, 7),       # patchify on a small map: the output pass
    ((8, 5, 5), (4, 8, 1, 1), 1, 0, 1, 2),       # 1x1 on a small map: the output pass
    ((4, 7, 7), (4, 2, 3, 3), 1, 1, 2, 1),       # groups: the shift split per group
])
def test_simulator_conv_terms_match_int64(case, loops):
    """Through the simulator: its int8 path (shift in the conv's output pass) against its int64
    reference, with exponents of both signs."""
    shape, wshape, stride, pad, groups, bits = case
    rng = np.random.default_rng(wshape[0] * 10 + bits)
    w = rng.integers(-128, 128, wshape).astype(I64) * 2
    e = np.resize(np.array([-3, 2, -1, 0, 1, -2], dtype=I64), wshape[0])
    g = _one_conv(w, e, shape, stride, pad, groups, bits)
    x = rng.integers(0, 1 << bits, (3, 2) + shape)
    x[rng.random(x.shape) < 0.5] = 0
    got = Simulator(g).run(x).outputs["y"]
    want = Simulator(g, fast=False).run(x).outputs["y"]
    assert np.array_equal(np.asarray(got).astype(I64), want)
